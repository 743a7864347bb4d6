"""Tests of the sandbox carrier's inbound messages, media, opt-outs, message list and Lookup.

They start the sandbox and a webhook receiver on free loopback ports and drive the official
Twilio and Bandwidth SDKs against them wherever the SDK has a call for the endpoint.
"""

import json
import re
import struct
import threading
import time
import zlib
from datetime import timedelta

import pytest
import requests
from bandwidth import ApiClient, Configuration, MediaApi, MessagesApi
from bandwidth.exceptions import NotFoundException, UnauthorizedException
from bandwidth.models import InboundCallback
from bandwidth.models.message_request import MessageRequest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

import sandbox
from sandbox.opt_out import OPT_OUT_CONFIRMATION, OPT_OUT_KEYWORDS
from sandbox.png import PALETTE, solid_png
from sandbox.serving import RedactingRequestHandler, redact_path

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "twilio-test-token"
BW_ACCOUNT = "9900001"
BW_APPLICATION = "app-pawpost-test"
BW_CALLBACK_USER = "bw-callback-user"
BW_CALLBACK_PASSWORD = "bw-callback-password"
TWILIO_CLINIC = "+15550000101"
BANDWIDTH_CLINIC = "+15550000102"
PHONE = "+15551230001"
OTHER_PHONE = "+15551230002"
INBOUND_PATH = "/twilio/inbound"
WAIT_SECONDS = 5.0


def wait_for(predicate, timeout=WAIT_SECONDS, interval=0.02):
    """Poll the predicate until it returns a truthy value, or fail after the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Condition not met within {timeout} s")


def serve_in_thread(app):
    """Start a threaded werkzeug server on a free loopback port and return (server, base URL)."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=RedactingRequestHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.port}"


class Receiver:
    """A webhook receiver that records every request and can fail the first few."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.failures_left = 0

    def __call__(self, environ, start_response):
        request = Request(environ)
        record = {
            "url": request.url,
            "path": request.path,
            "headers": dict(request.headers),
            "authorization": request.authorization,
            "form": request.form.copy(),
            "body": request.get_data(as_text=True),
        }
        with self.lock:
            self.requests.append(record)
            failing = self.failures_left > 0
            self.failures_left -= 1 if failing else 0
        return Response("fail" if failing else "<Response/>", status=500 if failing else 200)(
            environ, start_response
        )

    def received(self, path):
        """Return the requests received on one path so far."""
        with self.lock:
            return [record for record in self.requests if record["path"] == path]


@pytest.fixture
def receiver():
    """Run a webhook receiver on a free loopback port."""
    handler = Receiver()
    server, base_url = serve_in_thread(handler)
    handler.base_url = base_url
    yield handler
    server.shutdown()


def inbound_url(receiver):
    """Return the Twilio inbound webhook URL of the test clinic, query string included."""
    return receiver.base_url + INBOUND_PATH + "?clinic=7"


def sandbox_config(receiver, **overrides):
    """Build a config with one Twilio and one Bandwidth clinic number, both posting to the receiver."""
    return {
        "callback_delay": 0.02,
        "bandwidth_applications": {
            BW_APPLICATION: {
                "callback_url": receiver.base_url + "/bandwidth/callbacks",
                "username": BW_CALLBACK_USER,
                "password": BW_CALLBACK_PASSWORD,
            }
        },
        "numbers": {
            TWILIO_CLINIC: {
                "provider": "twilio",
                "inbound_url": inbound_url(receiver),
                "account_sid": ACCOUNT_SID,
                "auth_token": AUTH_TOKEN,
            },
            BANDWIDTH_CLINIC: {
                "provider": "bandwidth",
                "application_id": BW_APPLICATION,
                "account_id": BW_ACCOUNT,
            },
        },
        **overrides,
    }


@pytest.fixture
def start_sandbox(receiver):
    """Start sandbox servers with the given config and stop them after the test."""
    servers = []

    def start(config):
        server, base_url = serve_in_thread(sandbox.create_app(config))
        servers.append(server)
        return base_url

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def sandbox_url(start_sandbox, receiver):
    """Start a sandbox with both test clinic numbers configured."""
    return start_sandbox(sandbox_config(receiver))


def phone_sends(base_url, to, body="Rex ate a sock", phone=PHONE, **extra):
    """Send a message from the phone to a clinic number and return the HTTP response."""
    return requests.post(
        f"{base_url}/phones/{phone}/send", json={"to": to, "body": body, **extra}, timeout=30
    )


def twilio_client(base_url):
    """Build a real Twilio client whose Messages and Lookup requests go to the sandbox."""
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = base_url
    client.lookups.base_url = base_url
    return client


def bandwidth_configuration(base_url):
    """Build a Bandwidth SDK configuration that sends every operation to the sandbox."""
    return Configuration(
        username="bw-api-user",
        password="bw-api-password",
        host=base_url + "/api/v2",
        ignore_operation_servers=True,
    )


def bandwidth_events(receiver):
    """Return every event the receiver got on the Bandwidth callback URL, in order."""
    events = []
    for record in receiver.received("/bandwidth/callbacks"):
        events.extend(json.loads(record["body"]))
    return events


def phone_inbox(base_url, phone=PHONE):
    """Return the messages the phone received, oldest first."""
    return requests.get(f"{base_url}/phones/{phone}/messages", timeout=5).json()


def decode_png(data):
    """Check a PNG's signature, chunk CRCs and pixel data size, and return (width, height, first RGB)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        chunk_type = data[position + 4 : position + 8]
        chunk_data = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(chunk_type + chunk_data) & 0xFFFFFFFF
        chunks[chunk_type] = chunks.get(chunk_type, b"") + chunk_data
        position += 12 + length
    assert b"IEND" in chunks
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (bit_depth, colour_type) == (8, 2)
    pixels = zlib.decompress(chunks[b"IDAT"])
    assert len(pixels) == height * (1 + 3 * width)
    return width, height, tuple(pixels[1:4])


# Twilio inbound ------------------------------------------------------------------------------


def test_twilio_inbound_signed_webhook(sandbox_url, receiver):
    response = phone_sends(sandbox_url, TWILIO_CLINIC, media=3)
    assert response.status_code == 202
    result = response.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", result["id"])
    assert result["delivered"] is True
    assert result["status"] == 200
    (webhook,) = receiver.received(INBOUND_PATH)
    form = webhook["form"]
    assert webhook["url"] == inbound_url(receiver)
    assert webhook["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert RequestValidator(AUTH_TOKEN).validate(
        inbound_url(receiver), form, webhook["headers"]["X-Twilio-Signature"]
    )
    assert form["MessageSid"] == result["id"]
    assert form["SmsSid"] == result["id"]
    assert form["AccountSid"] == ACCOUNT_SID
    assert form["From"] == PHONE
    assert form["To"] == TWILIO_CLINIC
    assert form["Body"] == "Rex ate a sock"
    assert form["NumMedia"] == "3"
    assert form["NumSegments"] == "1"
    assert "MediaUrl3" not in form


def test_twilio_inbound_media_serves_pngs(sandbox_url, receiver):
    message_sid = phone_sends(sandbox_url, TWILIO_CLINIC, media=3).json()["id"]
    form = receiver.received(INBOUND_PATH)[0]["form"]
    url_pattern = (
        rf"{sandbox_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}/Media/ME[0-9a-f]{{32}}"
    )
    colours = []
    for index in range(3):
        assert form[f"MediaContentType{index}"] == "image/png"
        assert re.fullmatch(url_pattern, form[f"MediaUrl{index}"])
        media = requests.get(form[f"MediaUrl{index}"], timeout=5)
        assert media.status_code == 200
        assert media.headers["Content-Type"] == "image/png"
        width, height, colour = decode_png(media.content)
        assert (width, height) == (8, 8)
        colours.append(colour)
    assert colours == [PALETTE[0], PALETTE[1], PALETTE[2]]


def test_twilio_media_head_and_auth(sandbox_url, receiver):
    phone_sends(sandbox_url, TWILIO_CLINIC, media=1)
    url = receiver.received(INBOUND_PATH)[0]["form"]["MediaUrl0"]
    head = requests.head(url, timeout=5)
    assert head.status_code == 200
    assert head.headers["Content-Type"] == "image/png"
    assert head.content == b""
    assert requests.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5).status_code == 200
    wrong = requests.get(url, auth=(ACCOUNT_SID, "other-token"), timeout=5)
    assert wrong.status_code == 401
    assert wrong.json()["code"] == 20003
    missing = requests.get(url[:-32] + "0" * 32, timeout=5)
    assert missing.status_code == 404
    assert missing.json()["code"] == 20404


def test_twilio_inbound_repeat_posts_twice(sandbox_url, receiver):
    result = phone_sends(sandbox_url, TWILIO_CLINIC, repeat=2).json()
    webhooks = receiver.received(INBOUND_PATH)
    assert [webhook["form"]["MessageSid"] for webhook in webhooks] == [result["id"], result["id"]]
    validator = RequestValidator(AUTH_TOKEN)
    for webhook in webhooks:
        assert validator.validate(
            inbound_url(receiver), webhook["form"], webhook["headers"]["X-Twilio-Signature"]
        )
    assert len(result["webhooks"]) == 2
    assert result["delivered"] is True


def test_twilio_inbound_retried_after_error(sandbox_url, receiver):
    receiver.failures_left = 1
    result = phone_sends(sandbox_url, TWILIO_CLINIC).json()
    assert result["delivered"] is True
    assert result["status"] == 200
    assert result["webhooks"][0]["attempts"] == 2


def test_twilio_inbound_to_remote_url_skipped(start_sandbox, receiver):
    config = sandbox_config(receiver)
    config["numbers"][TWILIO_CLINIC]["inbound_url"] = "https://pawpost.example/webhooks/twilio"
    base_url = start_sandbox(config)
    response = phone_sends(base_url, TWILIO_CLINIC)
    assert response.status_code == 202
    assert response.json()["delivered"] is False
    assert response.json()["status"] is None
    assert receiver.received(INBOUND_PATH) == []


def test_twilio_inbound_fetch_and_segments(sandbox_url, receiver):
    result = phone_sends(sandbox_url, TWILIO_CLINIC, body="a" * 161).json()
    assert receiver.received(INBOUND_PATH)[0]["form"]["NumSegments"] == "2"
    message = twilio_client(sandbox_url).messages(result["id"]).fetch()
    assert message.direction == "inbound"
    assert message.status == "received"
    assert message.from_ == PHONE
    assert message.to == TWILIO_CLINIC
    assert message.date_sent is not None


# Bandwidth inbound ---------------------------------------------------------------------------


def test_bandwidth_inbound_event_parses(sandbox_url, receiver):
    result = phone_sends(sandbox_url, BANDWIDTH_CLINIC, media=2).json()
    assert result["delivered"] is True
    assert result["status"] == 200
    (record,) = receiver.received("/bandwidth/callbacks")
    assert record["authorization"].username == BW_CALLBACK_USER
    assert record["authorization"].password == BW_CALLBACK_PASSWORD
    assert record["headers"]["Content-Type"] == "application/json; charset=utf-8"
    (event,) = json.loads(record["body"])
    callback = InboundCallback.from_dict(event)
    assert callback.type == "message-received"
    assert callback.to == BANDWIDTH_CLINIC
    assert callback.message.id == result["id"]
    assert callback.message.owner == BANDWIDTH_CLINIC
    assert callback.message.application_id == BW_APPLICATION
    assert callback.message.direction == "in"
    assert callback.message.to == [BANDWIDTH_CLINIC]
    assert callback.message.var_from == PHONE
    assert callback.message.text == "Rex ate a sock"
    assert callback.message.segment_count == 1
    assert len(callback.message.media) == 2


def test_bandwidth_inbound_without_media(sandbox_url, receiver):
    phone_sends(sandbox_url, BANDWIDTH_CLINIC)
    (event,) = bandwidth_events(receiver)
    assert "media" not in event["message"]
    assert InboundCallback.from_dict(event).message.media is None


def test_bandwidth_inbound_repeat_same_id(sandbox_url, receiver):
    result = phone_sends(sandbox_url, BANDWIDTH_CLINIC, repeat=2).json()
    events = bandwidth_events(receiver)
    assert [event["message"]["id"] for event in events] == [result["id"], result["id"]]


def test_bandwidth_inbound_without_callback_url(start_sandbox, receiver):
    config = sandbox_config(receiver)
    config["bandwidth_applications"][BW_APPLICATION] = {}
    base_url = start_sandbox(config)
    response = phone_sends(base_url, BANDWIDTH_CLINIC)
    assert response.status_code == 202
    assert response.json()["delivered"] is False
    assert response.json()["status"] is None
    assert receiver.requests == []


def test_bandwidth_get_media_through_sdk(sandbox_url, receiver):
    phone_sends(sandbox_url, BANDWIDTH_CLINIC, media=2)
    urls = bandwidth_events(receiver)[0]["message"]["media"]
    media_api = MediaApi(ApiClient(bandwidth_configuration(sandbox_url)))
    for index, url in enumerate(urls):
        assert url.startswith(f"{sandbox_url}/api/v2/users/{BW_ACCOUNT}/media/")
        media_id = url.split("/media/", 1)[1]
        content = media_api.get_media(BW_ACCOUNT, media_id)
        assert decode_png(bytes(content))[2] == PALETTE[index]


def test_bandwidth_media_needs_auth(sandbox_url, receiver):
    phone_sends(sandbox_url, BANDWIDTH_CLINIC, media=1)
    url = bandwidth_events(receiver)[0]["message"]["media"][0]
    assert requests.get(url, timeout=5).status_code == 401
    response = requests.get(url, auth=("bw-api-user", "bw-api-password"), timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    with pytest.raises(UnauthorizedException):
        MediaApi(
            ApiClient(Configuration(host=sandbox_url + "/api/v2", ignore_operation_servers=True))
        ).get_media(BW_ACCOUNT, url.split("/media/", 1)[1])


def test_bandwidth_unknown_media_is_404(sandbox_url):
    media_api = MediaApi(ApiClient(bandwidth_configuration(sandbox_url)))
    with pytest.raises(NotFoundException):
        media_api.get_media(BW_ACCOUNT, "no-such-message/0/image0.png")


def test_bandwidth_search_lists_inbound(sandbox_url):
    result = phone_sends(sandbox_url, BANDWIDTH_CLINIC).json()
    url = f"{sandbox_url}/api/v2/users/{BW_ACCOUNT}/messages"
    found = requests.get(
        url, params={"messageDirection": "INBOUND"}, auth=("user", "password"), timeout=5
    ).json()
    assert [item["messageId"] for item in found["messages"]] == [result["id"]]
    assert found["messages"][0]["messageStatus"] == "RECEIVED"
    assert found["messages"][0]["sourceTn"] == PHONE


# Send request validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"to": "+15559999999", "body": "hi"}, 404),
        ({"to": "5550000101", "body": "hi"}, 400),
        ({"to": TWILIO_CLINIC, "body": ""}, 400),
        ({"to": TWILIO_CLINIC, "body": "x" * 1601}, 400),
        ({"to": TWILIO_CLINIC, "body": "hi", "media": 11}, 400),
        ({"to": TWILIO_CLINIC, "body": "hi", "media": True}, 400),
        ({"to": TWILIO_CLINIC, "body": "hi", "repeat": 0}, 400),
        ({"to": TWILIO_CLINIC, "body": "hi", "repeat": 4}, 400),
        (["not", "an", "object"], 400),
    ],
)
def test_send_rejects_invalid_request(sandbox_url, receiver, payload, status):
    response = requests.post(f"{sandbox_url}/phones/{PHONE}/send", json=payload, timeout=5)
    assert response.status_code == status
    assert response.json()["error"]
    assert receiver.requests == []


def test_send_rejects_invalid_phone(sandbox_url):
    response = requests.post(
        f"{sandbox_url}/phones/5551230001x/send", json={"to": TWILIO_CLINIC, "body": "hi"}, timeout=5
    )
    assert response.status_code == 400


def test_send_media_only_is_accepted(sandbox_url, receiver):
    response = phone_sends(sandbox_url, TWILIO_CLINIC, body="", media=1)
    assert response.status_code == 202
    assert receiver.received(INBOUND_PATH)[0]["form"]["Body"] == ""


# Twilio opt-out keywords ---------------------------------------------------------------------


def send_from_clinic(base_url, to=PHONE):
    """Send one message from the Twilio clinic number through the SDK."""
    return twilio_client(base_url).messages.create(
        to=to, from_=TWILIO_CLINIC, body="Rex is due for his booster."
    )


def test_stop_then_start_through_sdk(sandbox_url, receiver):
    phone_sends(sandbox_url, TWILIO_CLINIC, body=" stop ")
    assert receiver.received(INBOUND_PATH)[0]["form"]["Body"] == " stop "
    with pytest.raises(TwilioRestException) as raised:
        send_from_clinic(sandbox_url)
    assert raised.value.status == 400
    assert raised.value.code == 21610
    phone_sends(sandbox_url, TWILIO_CLINIC, body="Start")
    message = send_from_clinic(sandbox_url)
    assert message.status == "queued"
    assert requests.get(sandbox_url + "/sandbox/requests", timeout=5).json()[-1]["status"] == 201
    assert len(receiver.received(INBOUND_PATH)) == 2


@pytest.mark.parametrize("keyword", sorted(OPT_OUT_KEYWORDS))
def test_opt_out_keyword_blocks(sandbox_url, keyword):
    phone_sends(sandbox_url, TWILIO_CLINIC, body=keyword.lower())
    with pytest.raises(TwilioRestException) as raised:
        send_from_clinic(sandbox_url)
    assert raised.value.code == 21610


@pytest.mark.parametrize("keyword", ["START", "yes", "Unstop"])
def test_opt_in_keyword_unblocks(sandbox_url, keyword):
    phone_sends(sandbox_url, TWILIO_CLINIC, body="STOP")
    phone_sends(sandbox_url, TWILIO_CLINIC, body=keyword)
    assert send_from_clinic(sandbox_url).status == "queued"


def test_stop_confirmation_reaches_phone(sandbox_url):
    phone_sends(sandbox_url, TWILIO_CLINIC, body="STOP")
    (reply,) = phone_inbox(sandbox_url)
    assert reply["provider"] == "twilio"
    assert reply["from"] == TWILIO_CLINIC
    assert reply["body"] == OPT_OUT_CONFIRMATION
    assert reply["body"].startswith("You have successfully been unsubscribed.")


def test_stop_is_per_sender_and_phone(sandbox_url):
    phone_sends(sandbox_url, TWILIO_CLINIC, body="STOP")
    assert send_from_clinic(sandbox_url, to=OTHER_PHONE).status == "queued"
    other_sender = twilio_client(sandbox_url).messages.create(to=PHONE, from_="+15550000199", body="hi")
    assert other_sender.status == "queued"


def test_stop_in_a_sentence_is_ordinary(sandbox_url):
    phone_sends(sandbox_url, TWILIO_CLINIC, body="Please stop texting me")
    assert phone_inbox(sandbox_url) == []
    assert send_from_clinic(sandbox_url).status == "queued"


def test_bandwidth_stop_not_handled(sandbox_url, receiver):
    phone_sends(sandbox_url, BANDWIDTH_CLINIC, body="STOP")
    assert bandwidth_events(receiver)[0]["message"]["text"] == "STOP"
    assert phone_inbox(sandbox_url) == []
    request = MessageRequest(application_id=BW_APPLICATION, to=[PHONE], var_from=BANDWIDTH_CLINIC, text="hi")
    message = MessagesApi(ApiClient(bandwidth_configuration(sandbox_url))).create_message(BW_ACCOUNT, request)
    assert message.id


def test_reset_clears_opt_outs_and_media(sandbox_url, receiver):
    phone_sends(sandbox_url, TWILIO_CLINIC, body="STOP", media=1)
    media_url = receiver.received(INBOUND_PATH)[0]["form"]["MediaUrl0"]
    requests.post(sandbox_url + "/sandbox/reset", timeout=5)
    assert send_from_clinic(sandbox_url).status == "queued"
    assert requests.get(media_url, timeout=5).status_code == 404


# Twilio message list -------------------------------------------------------------------------


def wait_all_finished(base_url):
    """Wait until every stored message has posted all of its callbacks."""
    wait_for(
        lambda: all(
            item["callbacks_finished"]
            for item in requests.get(base_url + "/sandbox/messages", timeout=5).json()
        )
    )


def test_list_filters_by_to_and_from(sandbox_url):
    first = send_from_clinic(sandbox_url, to=PHONE)
    second = send_from_clinic(sandbox_url, to=OTHER_PHONE)
    third = send_from_clinic(sandbox_url, to=PHONE)
    inbound_sid = phone_sends(sandbox_url, TWILIO_CLINIC).json()["id"]
    wait_all_finished(sandbox_url)
    client = twilio_client(sandbox_url)
    to_phone = client.messages.list(to=PHONE, limit=20)
    assert [message.sid for message in to_phone] == [third.sid, first.sid]
    assert [message.sid for message in client.messages.list(to=OTHER_PHONE)] == [second.sid]
    from_phone = client.messages.list(from_=PHONE)
    assert [message.sid for message in from_phone] == [inbound_sid]
    assert from_phone[0].direction == "inbound"
    assert len(client.messages.list(from_=TWILIO_CLINIC)) == 3


def test_list_filters_by_date_sent(sandbox_url):
    message = send_from_clinic(sandbox_url)
    wait_all_finished(sandbox_url)
    client = twilio_client(sandbox_url)
    today = client.messages(message.sid).fetch().date_sent.date()
    assert [item.sid for item in client.messages.list(date_sent_after=today, limit=20)] == [message.sid]
    assert [item.sid for item in client.messages.list(date_sent_before=today)] == [message.sid]
    assert [item.sid for item in client.messages.list(date_sent=today)] == [message.sid]
    assert client.messages.list(date_sent_after=today + timedelta(days=1)) == []
    assert client.messages.list(date_sent_before=today - timedelta(days=1)) == []


def test_list_raw_query_shape(sandbox_url):
    message = send_from_clinic(sandbox_url)
    wait_all_finished(sandbox_url)
    url = f"{sandbox_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    today = twilio_client(sandbox_url).messages(message.sid).fetch().date_sent.date().isoformat()
    response = requests.get(f"{url}?DateSent>={today}&PageSize=20", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert response.status_code == 200
    page = response.json()
    assert len(page["messages"]) == 1
    assert page["next_page_uri"] is None
    assert page["previous_page_uri"] is None
    assert page["page"] == 0
    assert page["page_size"] == 20
    assert page["start"] == 0
    assert page["end"] == 0
    assert page["uri"].startswith(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?")
    assert page["first_page_uri"] == page["uri"]


def test_list_follows_pages(sandbox_url):
    sent = [send_from_clinic(sandbox_url).sid for _ in range(3)]
    listed = twilio_client(sandbox_url).messages.list(page_size=1, limit=3)
    assert [message.sid for message in listed] == sent[::-1]


def test_list_other_account_is_empty(sandbox_url):
    send_from_clinic(sandbox_url)
    other = Client("AC" + "3" * 32, AUTH_TOKEN)
    other.api.base_url = sandbox_url
    assert other.messages.list() == []


@pytest.mark.parametrize(
    "query", ["DateSent>=yesterday", "DateSent=2025-02-30", "PageSize=0", "PageSize=abc"]
)
def test_list_invalid_query_is_20001(sandbox_url, query):
    url = f"{sandbox_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?{query}"
    response = requests.get(url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert response.status_code == 400
    assert response.json()["code"] == 20001


# Twilio Lookup v2 ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "line_type", "carrier"),
    [("+15551230020", "landline", "Sandbox Telephone"), ("+15551230001", "mobile", "Sandbox Wireless")],
)
def test_lookup_line_type(sandbox_url, number, line_type, carrier):
    result = (
        twilio_client(sandbox_url).lookups.v2.phone_numbers(number).fetch(fields="line_type_intelligence")
    )
    assert result.line_type_intelligence["type"] == line_type
    assert result.line_type_intelligence["carrier_name"] == carrier
    assert result.line_type_intelligence["error_code"] is None
    assert result.phone_number == number
    assert result.valid is True


def test_lookup_basic_fields(sandbox_url):
    result = twilio_client(sandbox_url).lookups.v2.phone_numbers("+15551230001").fetch()
    assert result.calling_country_code == "1"
    assert result.country_code == "US"
    assert result.national_format == "(555) 123-0001"
    assert result.validation_errors == []
    assert result.line_type_intelligence is None
    assert result.caller_name is None
    assert result.url == f"{sandbox_url}/v2/PhoneNumbers/+15551230001"


def test_lookup_invalid_suffix(sandbox_url):
    result = twilio_client(sandbox_url).lookups.v2.phone_numbers("+15551230040").fetch()
    assert result.valid is False
    assert result.validation_errors == ["INVALID_BUT_POSSIBLE"]


def test_lookup_impossible_number(sandbox_url):
    result = twilio_client(sandbox_url).lookups.v2.phone_numbers("+1555123").fetch()
    assert result.valid is False
    assert result.validation_errors == ["TOO_SHORT"]


def test_lookup_bad_format_is_404(sandbox_url):
    with pytest.raises(TwilioRestException) as raised:
        twilio_client(sandbox_url).lookups.v2.phone_numbers("5551230001").fetch()
    assert raised.value.status == 404
    assert raised.value.code == 20404


def test_lookup_needs_auth(sandbox_url):
    response = requests.get(f"{sandbox_url}/v2/PhoneNumbers/+15551230001", timeout=5)
    assert response.status_code == 401
    assert response.json()["code"] == 20003


# Configuration and helpers -------------------------------------------------------------------


def twilio_number(**changes):
    """Return a valid Twilio clinic number entry with some keys changed or removed (None)."""
    entry = {
        "provider": "twilio",
        "inbound_url": "http://127.0.0.1:5000/webhooks/twilio",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        **changes,
    }
    return {key: value for key, value in entry.items() if value is not None}


@pytest.mark.parametrize(
    "numbers",
    [
        [],
        {"5550000101": twilio_number()},
        {TWILIO_CLINIC: twilio_number(provider="signalwire")},
        {TWILIO_CLINIC: twilio_number(auth_token=None)},
        {TWILIO_CLINIC: twilio_number(auth_token="")},
        {TWILIO_CLINIC: twilio_number(inbound_url="/webhooks/twilio")},
        {TWILIO_CLINIC: twilio_number(color="blue")},
        {
            BANDWIDTH_CLINIC: {
                "provider": "bandwidth",
                "application_id": "unknown-app",
                "account_id": BW_ACCOUNT,
            }
        },
        {BANDWIDTH_CLINIC: {"provider": "bandwidth", "application_id": BW_APPLICATION}},
    ],
)
def test_invalid_numbers_config_raises(numbers):
    config = {"bandwidth_applications": {BW_APPLICATION: {}}, "numbers": numbers}
    with pytest.raises(ValueError):
        sandbox.create_app(config)


def test_valid_numbers_config_accepted():
    numbers = {
        TWILIO_CLINIC: twilio_number(),
        BANDWIDTH_CLINIC: {
            "provider": "bandwidth",
            "application_id": BW_APPLICATION,
            "account_id": BW_ACCOUNT,
        },
    }
    app = sandbox.create_app({"bandwidth_applications": {BW_APPLICATION: {}}, "numbers": numbers})
    assert app.extensions["sandbox"].clinic_number(TWILIO_CLINIC) == twilio_number()


def test_solid_png_colours_differ():
    images = [solid_png(index) for index in range(10)]
    assert len(set(images)) == 10
    assert [decode_png(image)[2] for image in images] == list(PALETTE)


def test_redact_path_hides_lookup_number():
    assert (
        redact_path("/v2/PhoneNumbers/+15551230001?Fields=line_type_intelligence")
        == "/v2/PhoneNumbers/<number>"
    )
    assert redact_path("/phones/+15551230001/send") == "/phones/<number>/send"

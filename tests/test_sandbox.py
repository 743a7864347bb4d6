"""Tests of the sandbox carrier, driven through the official Twilio and Bandwidth SDKs."""

import json
import os
import re
import socket
import threading
import time

import pytest
import requests
from bandwidth import ApiClient, Configuration, MessagesApi
from bandwidth.exceptions import BadRequestException, UnauthorizedException
from bandwidth.models.message_request import MessageRequest
from bandwidth.models.status_callback import StatusCallback
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

import sandbox
from sandbox import callbacks
from sandbox.__main__ import parse_arguments
from sandbox.config import watch_config_file
from sandbox.outcomes import OUTCOMES, SUFFIX_OUTCOMES
from sandbox.phones import linkify
from sandbox.segments import count_segments
from sandbox.serving import RedactingRequestHandler, redact_path

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "twilio-test-token"
BW_ACCOUNT = "9900001"
BW_APPLICATION = "app-pawpost-test"
BW_CALLBACK_USER = "bw-callback-user"
BW_CALLBACK_PASSWORD = "bw-callback-password"
SENDER = "+15550000001"
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
    # A short poll interval keeps shutdown() at teardown from adding half a second per server.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.port}"


class Receiver:
    """A callback receiver that records every request and can fail the first few."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.failures_left = 0

    def __call__(self, environ, start_response):
        request = Request(environ)
        body = request.get_data(as_text=True)
        record = {
            "url": request.url,
            "path": request.path,
            "headers": dict(request.headers),
            "authorization": request.authorization,
            "form": request.form.copy(),
            "body": body,
        }
        with self.lock:
            self.requests.append(record)
            failing = self.failures_left > 0
            self.failures_left -= 1 if failing else 0
        return Response("fail" if failing else "", status=500 if failing else 200)(environ, start_response)

    def received(self, path):
        """Return the requests received on one path so far."""
        with self.lock:
            return [record for record in self.requests if record["path"] == path]


@pytest.fixture
def receiver():
    """Run a callback receiver on a free loopback port."""
    handler = Receiver()
    server, base_url = serve_in_thread(handler)
    handler.base_url = base_url
    yield handler
    server.shutdown()


@pytest.fixture
def start_sandbox(receiver):
    """Start sandbox servers with the given config overrides and stop them after the test."""
    servers = []

    def start(**overrides):
        config = {
            "callback_delay": 0.05,
            "bandwidth_applications": {
                BW_APPLICATION: {
                    "callback_url": receiver.base_url + "/bandwidth/status",
                    "username": BW_CALLBACK_USER,
                    "password": BW_CALLBACK_PASSWORD,
                }
            },
            **overrides,
        }
        app = sandbox.create_app(config)
        server, base_url = serve_in_thread(app)
        servers.append(server)
        return base_url

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def sandbox_url(start_sandbox):
    """Start a sandbox with the default test config."""
    return start_sandbox()


def twilio_client(base_url, account_sid=ACCOUNT_SID, username=None):
    """Build a real Twilio client pointed at the sandbox."""
    client = Client(username or account_sid, AUTH_TOKEN, account_sid=account_sid)
    client.api.base_url = base_url
    return client


def bandwidth_api(base_url, username="bw-api-user", password="bw-api-password"):
    """Build a real Bandwidth MessagesApi pointed at the sandbox."""
    configuration = Configuration(
        username=username,
        password=password,
        host=base_url + "/api/v2",
        ignore_operation_servers=True,
    )
    return MessagesApi(ApiClient(configuration))


def send_twilio(base_url, receiver, to, body="Rex is due for his booster.", **extra):
    """Send one message through the Twilio SDK with a StatusCallback on the receiver."""
    return twilio_client(base_url).messages.create(
        to=to,
        from_=SENDER,
        body=body,
        status_callback=receiver.base_url + "/twilio/status?clinic=7",
        **extra,
    )


def send_bandwidth(base_url, to, text="Rex is due for his booster.", **extra):
    """Send one message through the Bandwidth SDK."""
    request = MessageRequest(application_id=BW_APPLICATION, to=[to], var_from=SENDER, text=text, **extra)
    return bandwidth_api(base_url).create_message(BW_ACCOUNT, request)


def sandbox_messages(base_url):
    """Return the sandbox's inspection list of all messages."""
    return requests.get(base_url + "/sandbox/messages", timeout=5).json()


def wait_finished(base_url, message_id):
    """Wait until the sandbox has posted every callback of the message and return its records."""

    def finished():
        found = [item for item in sandbox_messages(base_url) if item["id"] == message_id]
        return found if found and all(item["callbacks_finished"] for item in found) else None

    return wait_for(finished)


def twilio_statuses(receiver, message_sid):
    """Return the MessageStatus values the receiver got for one Twilio message, in order."""
    return [
        record["form"]["MessageStatus"]
        for record in receiver.received("/twilio/status")
        if record["form"].get("MessageSid") == message_sid
    ]


def bandwidth_events(receiver, message_id):
    """Return the events the receiver got for one Bandwidth message, in order."""
    events = []
    for record in receiver.received("/bandwidth/status"):
        events.extend(event for event in json.loads(record["body"]) if event["message"]["id"] == message_id)
    return events


def last_request(base_url):
    """Return the most recent API request the sandbox logged."""
    return requests.get(base_url + "/sandbox/requests", timeout=5).json()[-1]


# Twilio create ----------------------------------------------------------------------------


def test_twilio_create_sends_form_fields(sandbox_url, receiver):
    send_twilio(
        sandbox_url,
        receiver,
        "+15551230001",
        media_url=["https://pawpost.test/a.jpg", "https://pawpost.test/b.png"],
    )
    logged = last_request(sandbox_url)
    assert logged["method"] == "POST"
    assert logged["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert logged["username"] == ACCOUNT_SID
    assert logged["password"] == AUTH_TOKEN
    assert logged["form"]["To"] == ["+15551230001"]
    assert logged["form"]["From"] == [SENDER]
    assert logged["form"]["Body"] == ["Rex is due for his booster."]
    assert logged["form"]["MediaUrl"] == ["https://pawpost.test/a.jpg", "https://pawpost.test/b.png"]
    assert logged["form"]["StatusCallback"] == [receiver.base_url + "/twilio/status?clinic=7"]
    assert logged["status"] == 201


def test_twilio_create_response_parses(sandbox_url, receiver):
    message = send_twilio(sandbox_url, receiver, "+15551230001")
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert message.status == "queued"
    assert message.account_sid == ACCOUNT_SID
    assert message.to == "+15551230001"
    assert message.from_ == SENDER
    assert message.body == "Rex is due for his booster."
    assert message.num_segments == "1"
    assert message.num_media == "0"
    assert message.direction == "outbound-api"
    assert message.error_code is None
    assert message.error_message is None
    assert message.price is None
    assert message.api_version == "2010-04-01"
    assert message.date_created is not None
    assert message.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message.sid}.json"


def test_twilio_create_stays_queued_without_delay(start_sandbox, receiver):
    base_url = start_sandbox(callback_delay=0)
    message = send_twilio(base_url, receiver, "+15551230001")
    assert message.status == "queued"


def test_twilio_segments_counted(sandbox_url, receiver):
    message = send_twilio(sandbox_url, receiver, "+15551230001", body="a" * 161)
    assert message.num_segments == "2"


def test_twilio_wrong_user_raises_20003(sandbox_url):
    client = twilio_client(sandbox_url, username="AC" + "2" * 32)
    with pytest.raises(TwilioRestException) as raised:
        client.messages.create(to="+15551230001", from_=SENDER, body="hi")
    assert raised.value.status == 401
    assert raised.value.code == 20003


def test_twilio_missing_auth_answers_401(sandbox_url):
    url = f"{sandbox_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    response = requests.post(url, data={"To": "+15551230001", "From": SENDER, "Body": "hi"}, timeout=5)
    assert response.status_code == 401
    assert response.json()["code"] == 20003
    assert response.json()["more_info"] == "https://www.twilio.com/docs/errors/20003"


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"to": "5551230001"}, 21211),
        ({"from_": "+0123"}, 21212),
        ({"from_": None}, 21603),
        ({"body": None}, 21602),
        ({"body": "x" * 1601}, 21617),
        ({"media_url": [f"https://pawpost.test/{index}.jpg" for index in range(11)]}, 21623),
        ({"media_url": ["ftp://pawpost.test/a.jpg"]}, 21620),
        ({"status_callback": "not a url"}, 21609),
        ({"to": "+15551230030"}, 21610),
    ],
)
def test_twilio_create_errors(sandbox_url, arguments, code):
    values = {"to": "+15551230001", "from_": SENDER, "body": "hi", **arguments}
    values = {key: value for key, value in values.items() if value is not None}
    with pytest.raises(TwilioRestException) as raised:
        twilio_client(sandbox_url).messages.create(**values)
    assert raised.value.status == 400
    assert raised.value.code == code


def test_twilio_missing_to_is_21604(sandbox_url):
    url = f"{sandbox_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    form = {"From": SENDER, "Body": "hi"}
    response = requests.post(url, data=form, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=5)
    assert response.status_code == 400
    assert response.json()["code"] == 21604


def test_twilio_opted_out_stores_nothing(sandbox_url, receiver):
    with pytest.raises(TwilioRestException):
        send_twilio(sandbox_url, receiver, "+15551230030")
    assert sandbox_messages(sandbox_url) == []


# Twilio fetch and callbacks ------------------------------------------------------------------


def test_twilio_fetch_returns_final_state(sandbox_url, receiver):
    message = send_twilio(sandbox_url, receiver, "+15551230010")
    wait_finished(sandbox_url, message.sid)
    fetched = twilio_client(sandbox_url).messages(message.sid).fetch()
    assert fetched.sid == message.sid
    assert fetched.status == "undelivered"
    assert fetched.error_code == 30007
    assert fetched.date_sent is not None


def test_twilio_fetch_unknown_raises_20404(sandbox_url):
    with pytest.raises(TwilioRestException) as raised:
        twilio_client(sandbox_url).messages("SM" + "0" * 32).fetch()
    assert raised.value.status == 404
    assert raised.value.code == 20404


def test_twilio_fetch_other_account_is_404(sandbox_url, receiver):
    message = send_twilio(sandbox_url, receiver, "+15551230001")
    other = twilio_client(sandbox_url, account_sid="AC" + "3" * 32)
    with pytest.raises(TwilioRestException) as raised:
        other.messages(message.sid).fetch()
    assert raised.value.code == 20404


def test_twilio_callback_fields_and_signature(sandbox_url, receiver):
    message = send_twilio(sandbox_url, receiver, "+15551230020")
    wait_finished(sandbox_url, message.sid)
    sent, final = receiver.received("/twilio/status")
    callback_url = receiver.base_url + "/twilio/status?clinic=7"
    validator = RequestValidator(AUTH_TOKEN)
    assert sent["url"] == callback_url
    assert sent["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert validator.validate(callback_url, sent["form"], sent["headers"]["X-Twilio-Signature"])
    assert validator.validate(callback_url, final["form"], final["headers"]["X-Twilio-Signature"])
    assert sent["form"]["MessageStatus"] == "sent"
    assert "ErrorCode" not in sent["form"]
    assert final["form"]["AccountSid"] == ACCOUNT_SID
    assert final["form"]["MessageSid"] == message.sid
    assert final["form"]["SmsSid"] == message.sid
    assert final["form"]["MessageStatus"] == "undelivered"
    assert final["form"]["SmsStatus"] == "undelivered"
    assert final["form"]["From"] == SENDER
    assert final["form"]["To"] == "+15551230020"
    assert final["form"]["ApiVersion"] == "2010-04-01"
    assert final["form"]["ErrorCode"] == "30006"
    assert final["form"]["ErrorMessage"]


def test_twilio_signature_rejects_other_token(sandbox_url, receiver):
    message = send_twilio(sandbox_url, receiver, "+15551230001")
    wait_finished(sandbox_url, message.sid)
    sent = receiver.received("/twilio/status")[0]
    callback_url = receiver.base_url + "/twilio/status?clinic=7"
    signature = sent["headers"]["X-Twilio-Signature"]
    assert not RequestValidator("other-token").validate(callback_url, sent["form"], signature)


def test_twilio_without_status_callback(sandbox_url, receiver):
    client = twilio_client(sandbox_url)
    message = client.messages.create(to="+15551230001", from_=SENDER, body="hi")
    wait_finished(sandbox_url, message.sid)
    assert receiver.received("/twilio/status") == []
    assert client.messages(message.sid).fetch().status == "delivered"


TWILIO_OUTCOMES = [
    ("+15551230000", ["sent", "delivered"], None),
    ("+15551230005", ["sent", "delivered"], None),
    ("+15551230010", ["sent", "undelivered"], "30007"),
    ("+15551230020", ["sent", "undelivered"], "30006"),
    ("+15551230040", ["failed"], "30005"),
    ("+15551230050", ["sent", "undelivered"], "30004"),
    ("+15551230060", ["sent", "undelivered"], "30003"),
    ("+15551230070", ["sent"], None),
    ("+15551230080", ["failed"], "30034"),
    ("+15551230090", ["sent", "undelivered"], "30999"),
    ("+15551230099", ["sent", "undelivered"], "30007"),
    ("+15551230015", ["sent", "delivered"], None),
    ("+15551230098", ["sent", "delivered"], None),
]


@pytest.mark.parametrize(("to", "statuses", "error_code"), TWILIO_OUTCOMES)
def test_twilio_outcome_by_suffix(sandbox_url, receiver, to, statuses, error_code):
    message = send_twilio(sandbox_url, receiver, to)
    wait_finished(sandbox_url, message.sid)
    assert twilio_statuses(receiver, message.sid) == statuses
    final = receiver.received("/twilio/status")[-1]["form"]
    assert final.get("ErrorCode") == error_code


def test_twilio_temporary_alternates(sandbox_url, receiver):
    results = []
    for _ in range(3):
        message = send_twilio(sandbox_url, receiver, "+15551230060")
        wait_finished(sandbox_url, message.sid)
        results.append(twilio_statuses(receiver, message.sid)[-1])
    assert results == ["undelivered", "delivered", "undelivered"]


# Link filtering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "to", "body", "final_status"),
    [
        (None, "+15551230010", "Lab results are ready.", "undelivered"),
        (None, "+15551230010", "New message: https://pawpost.test/p/abc", "delivered"),
        (None, "+15551230010", "New message: http://pawpost.test/p/abc", "delivered"),
        ("https://pawpost.test/p/", "+15551230010", "See https://elsewhere.test/x", "undelivered"),
        ("https://pawpost.test/p/", "+15551230010", "See https://pawpost.test/p/abc", "delivered"),
        (None, "+15551230099", "New message: https://pawpost.test/p/abc", "undelivered"),
        ("https://pawpost.test/p/", "+15551230099", "See https://pawpost.test/p/abc", "undelivered"),
    ],
)
def test_carrier_filter_spares_links(start_sandbox, receiver, prefix, to, body, final_status):
    base_url = start_sandbox(allowed_link_prefix=prefix)
    message = send_twilio(base_url, receiver, to, body=body)
    wait_finished(base_url, message.sid)
    assert twilio_statuses(receiver, message.sid)[-1] == final_status


def test_bandwidth_filter_spares_links(sandbox_url, receiver):
    filtered = send_bandwidth(sandbox_url, "+15551230010", text="Lab results are ready.")
    pointer = send_bandwidth(sandbox_url, "+15551230010", text="New message: https://pawpost.test/p/abc")
    wait_finished(sandbox_url, filtered.id)
    wait_finished(sandbox_url, pointer.id)
    assert bandwidth_events(receiver, filtered.id)[-1]["type"] == "message-failed"
    assert bandwidth_events(receiver, pointer.id)[-1]["type"] == "message-delivered"


# Bandwidth create ---------------------------------------------------------------------------


def test_bandwidth_create_sends_json_and_auth(sandbox_url):
    send_bandwidth(sandbox_url, "+15551230001", tag="appt-42", priority="high")
    logged = last_request(sandbox_url)
    assert logged["method"] == "POST"
    assert logged["path"] == f"/api/v2/users/{BW_ACCOUNT}/messages"
    assert logged["username"] == "bw-api-user"
    assert logged["password"] == "bw-api-password"
    assert logged["content_type"].startswith("application/json")
    assert logged["json"]["applicationId"] == BW_APPLICATION
    assert logged["json"]["to"] == ["+15551230001"]
    assert logged["json"]["from"] == SENDER
    assert logged["json"]["text"] == "Rex is due for his booster."
    assert logged["json"]["tag"] == "appt-42"
    assert logged["json"]["priority"] == "high"
    assert logged["status"] == 202


def test_bandwidth_create_response_parses(sandbox_url):
    request = MessageRequest(
        application_id=BW_APPLICATION,
        to=["+15551230001"],
        var_from=SENDER,
        text="Rex is due for his booster.",
        tag="appt-42",
    )
    response = bandwidth_api(sandbox_url).create_message_with_http_info(BW_ACCOUNT, request)
    message = response.data
    assert response.status_code == 202
    assert re.fullmatch(r"\d{13}[a-z0-9]{15}", message.id)
    assert message.owner == SENDER
    assert message.application_id == BW_APPLICATION
    assert message.time is not None
    assert message.segment_count == 1
    assert message.direction == "out"
    assert message.to == ["+15551230001"]
    assert message.var_from == SENDER
    assert message.text == "Rex is due for his booster."
    assert message.tag == "appt-42"
    assert message.priority == "default"


def test_bandwidth_accepts_to_as_string(sandbox_url):
    body = {"applicationId": BW_APPLICATION, "to": "+15551230001", "from": SENDER, "text": "hi"}
    response = requests.post(
        f"{sandbox_url}/api/v2/users/{BW_ACCOUNT}/messages", json=body, auth=("user", "password"), timeout=5
    )
    assert response.status_code == 202
    assert response.json()["to"] == ["+15551230001"]


def test_bandwidth_empty_credentials_raise_401(sandbox_url):
    api = bandwidth_api(sandbox_url, username="", password="")
    request = MessageRequest(application_id=BW_APPLICATION, to=["+15551230001"], var_from=SENDER, text="hi")
    with pytest.raises(UnauthorizedException) as raised:
        api.create_message(BW_ACCOUNT, request)
    assert raised.value.status == 401
    assert raised.value.data.type == "unauthorized"


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"application_id": "app-unknown"}, "applicationId"),
        ({"to": ["5551230001"]}, "to"),
        ({"to": [f"+1555123{index:04d}" for index in range(11)]}, "to"),
        ({"var_from": "not a sender!"}, "from"),
        ({"text": None}, "text"),
        ({"media": ["ftp://pawpost.test/a.jpg"]}, "media"),
    ],
)
def test_bandwidth_validation_errors(sandbox_url, fields, field_name):
    values = {
        "application_id": BW_APPLICATION,
        "to": ["+15551230001"],
        "var_from": SENDER,
        "text": "hi",
        **fields,
    }
    values = {key: value for key, value in values.items() if value is not None}
    with pytest.raises(BadRequestException) as raised:
        bandwidth_api(sandbox_url).create_message(BW_ACCOUNT, MessageRequest(**values))
    assert raised.value.status == 400
    assert raised.value.data.type == "request-validation"
    assert raised.value.data.field_errors[0].field_name == field_name
    assert json.loads(raised.value.body)["fieldErrors"][0]["fieldName"] == field_name


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"text": "x" * 2049}, "text"),
        ({"tag": "t" * 1025}, "tag"),
        ({"priority": "urgent"}, "priority"),
        ({"expiration": "2001-01-01T00:00:00Z"}, "expiration"),
        ({"expiration": "tomorrow"}, "expiration"),
    ],
)
def test_bandwidth_raw_validation_errors(sandbox_url, body, field_name):
    payload = {"applicationId": BW_APPLICATION, "to": ["+15551230001"], "from": SENDER, "text": "hi", **body}
    url = f"{sandbox_url}/api/v2/users/{BW_ACCOUNT}/messages"
    response = requests.post(url, json=payload, auth=("user", "password"), timeout=5)
    assert response.status_code == 400
    assert response.json()["fieldErrors"][0]["fieldName"] == field_name


def test_bandwidth_rejects_non_json(sandbox_url):
    response = requests.post(
        f"{sandbox_url}/api/v2/users/{BW_ACCOUNT}/messages", data="to=x", auth=("user", "password"), timeout=5
    )
    assert response.status_code == 415
    assert response.json()["type"] == "unsupported-content-type"


# Bandwidth callbacks and search ---------------------------------------------------------------


def test_bandwidth_callback_request(sandbox_url, receiver):
    message = send_bandwidth(sandbox_url, "+15551230001", tag="appt-42")
    wait_finished(sandbox_url, message.id)
    (record,) = receiver.received("/bandwidth/status")
    events = json.loads(record["body"])
    parsed = StatusCallback.from_dict(events[0])
    assert record["headers"]["Content-Type"] == "application/json; charset=utf-8"
    assert record["headers"]["User-Agent"] == "BandwidthAPI/v2"
    assert record["authorization"].username == BW_CALLBACK_USER
    assert record["authorization"].password == BW_CALLBACK_PASSWORD
    assert len(events) == 1
    assert parsed.type == "message-delivered"
    assert parsed.to == "+15551230001"
    assert parsed.error_code is None
    assert parsed.message.id == message.id
    assert parsed.message.owner == SENDER
    assert parsed.message.application_id == BW_APPLICATION
    assert parsed.message.direction == "out"
    assert parsed.message.to == ["+15551230001"]
    assert parsed.message.var_from == SENDER
    assert parsed.message.text == ""
    assert parsed.message.tag == "appt-42"


def test_bandwidth_mms_reports_sending_first(sandbox_url, receiver):
    message = send_bandwidth(sandbox_url, "+15551230001", media=["https://pawpost.test/rex.jpg"])
    wait_finished(sandbox_url, message.id)
    events = bandwidth_events(receiver, message.id)
    assert [event["type"] for event in events] == ["message-sending", "message-delivered"]
    assert StatusCallback.from_dict(events[0]).message.media == ["https://pawpost.test/rex.jpg"]


BANDWIDTH_OUTCOMES = [
    ("+15551230003", "message-delivered", None),
    ("+15551230010", "message-failed", 4770),
    ("+15551230020", "message-failed", 4720),
    ("+15551230030", "message-failed", 4775),
    ("+15551230040", "message-failed", 4721),
    ("+15551230050", "message-failed", 4772),
    ("+15551230060", "message-failed", 4702),
    ("+15551230070", None, None),
    ("+15551230080", "message-failed", 4481),
    ("+15551230090", "message-failed", 4999),
    ("+15551230099", "message-failed", 4770),
    ("+15551230042", "message-delivered", None),
]


@pytest.mark.parametrize(("to", "event_type", "error_code"), BANDWIDTH_OUTCOMES)
def test_bandwidth_outcome_by_suffix(sandbox_url, receiver, to, event_type, error_code):
    message = send_bandwidth(sandbox_url, to)
    wait_finished(sandbox_url, message.id)
    events = [StatusCallback.from_dict(event) for event in bandwidth_events(receiver, message.id)]
    assert [event.type for event in events] == ([event_type] if event_type else [])
    assert [event.error_code for event in events] == ([error_code] if event_type else [])


def test_bandwidth_search_by_message_id(sandbox_url):
    message = send_bandwidth(sandbox_url, "+15551230020")
    wait_finished(sandbox_url, message.id)
    found = bandwidth_api(sandbox_url).list_messages(BW_ACCOUNT, message_id=message.id)
    (item,) = found.messages
    assert found.total_count == 1
    assert item.message_id == message.id
    assert item.account_id == BW_ACCOUNT
    assert item.source_tn == SENDER
    assert item.destination_tn == "+15551230020"
    assert item.message_status == "FAILED"
    assert item.message_direction == "OUTBOUND"
    assert item.message_type == "sms"
    assert item.error_code == 4720
    assert item.segment_count == 1
    assert item.receive_time is not None


def test_bandwidth_search_no_final_is_sent(sandbox_url):
    message = send_bandwidth(sandbox_url, "+15551230070")
    wait_finished(sandbox_url, message.id)
    (item,) = bandwidth_api(sandbox_url).list_messages(BW_ACCOUNT, message_id=message.id).messages
    assert item.message_status == "SENT"
    assert item.error_code is None


def test_bandwidth_search_needs_a_parameter(sandbox_url):
    with pytest.raises(BadRequestException) as raised:
        bandwidth_api(sandbox_url).list_messages(BW_ACCOUNT)
    assert raised.value.status == 400
    assert raised.value.data.type == "request-validation"


def test_bandwidth_search_other_account_is_empty(sandbox_url):
    message = send_bandwidth(sandbox_url, "+15551230001")
    found = bandwidth_api(sandbox_url).list_messages("9900002", message_id=message.id)
    assert found.total_count == 0


# Callback delivery ---------------------------------------------------------------------------


def test_duplicate_callbacks_post_twice(start_sandbox, receiver):
    base_url = start_sandbox(duplicate_callbacks=True)
    message = send_twilio(base_url, receiver, "+15551230001")
    wait_finished(base_url, message.sid)
    assert twilio_statuses(receiver, message.sid) == ["sent", "sent", "delivered", "delivered"]


def test_callback_retried_after_errors(sandbox_url, receiver):
    receiver.failures_left = 2
    message = send_bandwidth(sandbox_url, "+15551230001")
    (record,) = wait_finished(sandbox_url, message.id)
    (result,) = record["callbacks"]
    assert result["attempts"] == 3
    assert result["delivered"] is True
    assert result["http_status"] == 200
    assert len(receiver.received("/bandwidth/status")) == 3


def closed_port():
    """Return a loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_callback_gives_up_after_five_tries(start_sandbox, monkeypatch):
    monkeypatch.setattr(callbacks, "FIRST_BACKOFF_SECONDS", 0.01)
    base_url = start_sandbox()
    client = twilio_client(base_url)
    url = f"http://127.0.0.1:{closed_port()}/twilio/status"
    message = client.messages.create(to="+15551230070", from_=SENDER, body="hi", status_callback=url)
    (record,) = wait_finished(base_url, message.sid)
    (result,) = record["callbacks"]
    assert result["attempts"] == 5
    assert result["delivered"] is False
    assert result["error"] == "ConnectionError"


def test_callback_to_remote_host_skipped(sandbox_url):
    client = twilio_client(sandbox_url)
    url = "https://pawpost.example.com/twilio/status"
    message = client.messages.create(to="+15551230070", from_=SENDER, body="hi", status_callback=url)
    (record,) = wait_finished(sandbox_url, message.sid)
    assert record["callbacks"] == [{"event": "sent", "skipped": "not a loopback URL"}]


def test_application_without_callback_url(start_sandbox):
    base_url = start_sandbox(bandwidth_applications={BW_APPLICATION: {}})
    message = send_bandwidth(base_url, "+15551230001")
    (record,) = wait_finished(base_url, message.id)
    assert record["status"] == "DELIVERED"
    assert record["callbacks"] == []


# Phones --------------------------------------------------------------------------------------


def test_phone_receives_delivered_and_unconfirmed(sandbox_url, receiver):
    delivered = send_twilio(sandbox_url, receiver, "+15551230060", body="first")
    wait_finished(sandbox_url, delivered.sid)
    media = ["https://pawpost.test/rex.jpg"]
    second = send_bandwidth(sandbox_url, "+15551230060", text="second", media=media)
    wait_finished(sandbox_url, second.id)
    unconfirmed = send_twilio(sandbox_url, receiver, "+15551230070", body="no receipt")
    wait_finished(sandbox_url, unconfirmed.sid)
    received = requests.get(sandbox_url + "/phones/%2B15551230060/messages", timeout=5).json()
    (message,) = received
    assert message["id"] == second.id
    assert message["provider"] == "bandwidth"
    assert message["from"] == SENDER
    assert message["body"] == "second"
    assert message["media"] == ["https://pawpost.test/rex.jpg"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", message["time"])
    no_receipt = requests.get(sandbox_url + "/phones/+15551230070/messages", timeout=5).json()
    assert [item["id"] for item in no_receipt] == [unconfirmed.sid]


def test_phone_messages_oldest_first(sandbox_url, receiver):
    first = send_twilio(sandbox_url, receiver, "+15551230001", body="one")
    wait_finished(sandbox_url, first.sid)
    second = send_bandwidth(sandbox_url, "+15551230001", text="two")
    wait_finished(sandbox_url, second.id)
    received = requests.get(sandbox_url + "/phones/+15551230001/messages", timeout=5).json()
    assert [item["body"] for item in received] == ["one", "two"]


def test_phone_page_escapes_and_links(sandbox_url, receiver):
    body = "<script>x()</script> see https://pawpost.test/p/a?b=1&c=2. javascript:alert(1)"
    message = send_twilio(sandbox_url, receiver, "+15551230001", body=body)
    wait_finished(sandbox_url, message.sid)
    page = requests.get(sandbox_url + "/phones/%2B15551230001", timeout=5).text
    assert "<script>x()" not in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
    assert '<a href="https://pawpost.test/p/a?b=1&amp;c=2"' in page
    assert 'href="javascript' not in page
    assert 'name="viewport"' in page


def test_index_lists_phones(sandbox_url, receiver):
    message = send_twilio(sandbox_url, receiver, "+15551230001")
    wait_finished(sandbox_url, message.sid)
    page = requests.get(sandbox_url + "/", timeout=5).text
    assert "+15551230001" in page


def test_reset_clears_state(sandbox_url, receiver):
    message = send_twilio(sandbox_url, receiver, "+15551230001")
    wait_finished(sandbox_url, message.sid)
    response = requests.post(sandbox_url + "/sandbox/reset", timeout=5)
    assert response.status_code == 200
    assert sandbox_messages(sandbox_url) == []
    assert requests.get(sandbox_url + "/sandbox/requests", timeout=5).json() == []
    assert requests.get(sandbox_url + "/phones/+15551230001/messages", timeout=5).json() == []


def test_reset_restarts_attempt_count(sandbox_url, receiver):
    first = send_twilio(sandbox_url, receiver, "+15551230060")
    wait_finished(sandbox_url, first.sid)
    requests.post(sandbox_url + "/sandbox/reset", timeout=5)
    again = send_twilio(sandbox_url, receiver, "+15551230060")
    wait_finished(sandbox_url, again.sid)
    assert twilio_statuses(receiver, again.sid)[-1] == "undelivered"


# Documentation ------------------------------------------------------------------------------


README_PATH = os.path.join(os.path.dirname(sandbox.__file__), "README.md")


@pytest.mark.parametrize("suffix", sorted(set(SUFFIX_OUTCOMES) - {f"0{digit}" for digit in range(10)}))
def test_readme_lists_outcome_codes(suffix):
    outcome = OUTCOMES[SUFFIX_OUTCOMES[suffix]]
    with open(README_PATH, encoding="utf-8") as readme:
        row = next(line for line in readme if line.startswith(f"| {suffix} | {outcome.name} |"))
    codes = (outcome.twilio_error_code, outcome.twilio_reject_code, outcome.bandwidth_error_code)
    for code in [code for code in codes if code is not None]:
        assert str(code) in row


# Helpers and configuration --------------------------------------------------------------------


def test_linkify_trims_trailing_punctuation():
    expected = 'see <a href="https://a.test/x" rel="noopener noreferrer">https://a.test/x</a>.'
    assert str(linkify("see https://a.test/x.")) == expected


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("{" * 80, 1),
        ("{" * 81, 2),
        ("é" * 160, 1),
        ("ы" * 70, 1),
        ("ы" * 71, 2),
        ("🐶" * 35, 1),
        ("🐶" * 36, 2),
    ],
)
def test_count_segments(text, segments):
    assert count_segments(text) == segments


def test_redact_path_hides_numbers():
    assert redact_path("/phones/+15551230001/messages") == "/phones/<number>/messages"
    assert redact_path("/api/v2/users/1/messages?destinationTn=%2B1555") == "/api/v2/users/1/messages"


@pytest.mark.parametrize(
    "config",
    [
        {"callback_delay": -1},
        {"duplicate_callbacks": "yes"},
        {"allowed_link_prefix": ""},
        {"bandwidth_applications": {"app": {"callback_url": 5}}},
        {"bandwidth_applications": {"app": {"url": "http://127.0.0.1/"}}},
        {"unknown_key": 1},
    ],
)
def test_invalid_config_raises(config):
    with pytest.raises(ValueError):
        sandbox.create_app(config)


def test_config_file_reloaded_on_change(tmp_path):
    path = tmp_path / "sandbox.json"
    app = sandbox.create_app()
    watch_config_file(app, str(path))
    client = app.test_client()
    path.write_text(json.dumps({"callback_delay": 0.5, "bandwidth_applications": {"app-1": {}}}))
    client.get("/sandbox/messages")
    state = app.extensions["sandbox"]
    assert state.config_value("callback_delay") == 0.5
    assert state.bandwidth_application("app-1") == {"callback_url": None, "username": None, "password": None}
    path.write_text("{not json")
    os.utime(path, (time.time() + 5, time.time() + 5))
    client.get("/sandbox/messages")
    assert state.config_value("callback_delay") == 0.5


def test_config_retried_after_partial_write(tmp_path):
    path = tmp_path / "sandbox.json"
    path.write_text('{"callback_delay": ')
    app = sandbox.create_app()
    watcher = watch_config_file(app, str(path))
    stamp = path.stat().st_mtime_ns
    path.write_text('{"callback_delay": 0.7}')
    os.utime(path, ns=(stamp, stamp))
    watcher.reload_if_changed()
    assert app.extensions["sandbox"].config_value("callback_delay") == 0.7


def test_main_rejects_public_host():
    with pytest.raises(SystemExit) as raised:
        parse_arguments(["--host", "0.0.0.0"])
    assert raised.value.code == 2


def test_main_accepts_loopback_host():
    arguments = parse_arguments(["--host", "::1", "--port", "5051"])
    assert arguments.port == 5051

"""Stand-ins for provider behaviour the sandbox does not offer, and provider callbacks posted by hand.

``CannedResponseServer`` is a loopback HTTP server that returns one fixed response to every
request. Pointed to by ``PAWPOST_SANDBOX_URL``, it makes the real SDKs get any create-time
error code. As a callback URL, it takes callbacks and passes none on.

The callback helpers post a status event for a delivery exactly as the provider would: Twilio's
form signed with the clinic's auth token, Bandwidth's JSON array with the clinic's basic auth.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from twilio.request_validator import RequestValidator

from conftest import TWILIO_SID, TWILIO_TOKEN
from helpers import delivery, wait_for_callbacks
from notifier import jobs, queues
from portal.extensions import db
from portal.models import Clinic, Delivery


@pytest.fixture(autouse=True)
def settle_sandbox(live):
    """Stop the sandbox's callbacks for this test before the next test empties the tables.

    The ``app`` fixture deletes rows before it resets the sandbox, so a late callback can insert
    an event row between the two deletes and break PostgreSQL's foreign keys. Import this fixture
    into a test module to apply it there.
    """
    yield
    if live.carrier.config["callback_delay"] > 1:
        # Slow steps are still sleeping, so a reset drops them before any is posted.
        live.carrier.reset()
    else:
        wait_for_callbacks(live)


class CannedResponseServer:
    """A loopback HTTP server that returns ``status`` and a JSON ``body`` to every request and records its path."""

    def __init__(self, status, body):
        self.status = status
        self.body = json.dumps(body).encode()
        self.lock = threading.Lock()
        self.paths = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def _handler_class(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with stub.lock:
                    stub.paths.append(self.path)
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(stub.body)))
                self.end_headers()
                self.wfile.write(stub.body)

            do_GET = do_POST

            def log_message(self, format, *args):
                # Silenced, because the request lines of Lookup calls contain phone numbers.
                pass

        return Handler

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def twilio_error_body(code, http_status=400):
    """Return Twilio's legacy error body, which the SDK raises as TwilioRestException."""
    return {
        "code": code,
        "message": f"Sandbox stub error {code}",
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": http_status,
    }


def bandwidth_error_body(http_status):
    """Return Bandwidth's error body, which has no numeric code: its create call reports only the HTTP status."""
    return {"type": f"http-{http_status}", "description": f"Sandbox stub error for HTTP {http_status}"}


def sms_delivery(message_id):
    """Return the message's SMS delivery as stored now."""
    return delivery(message_id, "sms")


def post_twilio_status(client, app, row, status, error_code=None, attempt=None):
    """Post a Twilio status callback for delivery ``row``, signed like Twilio signs it."""
    clinic = db.session.get(Clinic, row.message.clinic_id)
    ref = f"{row.id}.{row.attempts if attempt is None else attempt}"
    path = f"/webhooks/twilio/{clinic.id}/status?ref={ref}"
    params = {
        "AccountSid": TWILIO_SID,
        "MessageSid": row.provider_message_id or "SM" + "0" * 32,
        "SmsSid": row.provider_message_id or "SM" + "0" * 32,
        "MessageStatus": status,
        "SmsStatus": status,
        "From": clinic.sender_number,
        "To": row.message.client.mobile_number,
        "ApiVersion": "2010-04-01",
    }
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
        params["ErrorMessage"] = "Stub failure"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        app.config["PAWPOST_BASE_URL"] + path, params
    )
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def bandwidth_event(row, event_type, error_code=None, attempt=None):
    """Return one Bandwidth status event for delivery ``row``, with our ref in the tag."""
    clinic = db.session.get(Clinic, row.message.clinic_id)
    number = row.message.client.mobile_number
    event = {
        "type": event_type,
        "time": "2026-01-05T18:20:16Z",
        "description": "Stub event",
        "to": number,
        "message": {
            "id": row.provider_message_id or "1741101377000stub",
            "owner": clinic.sender_number,
            "applicationId": clinic.bandwidth_application_id,
            "time": "2026-01-05T18:20:15Z",
            "segmentCount": 1,
            "direction": "out",
            "to": [number],
            "from": clinic.sender_number,
            "text": "",
            "tag": f"{row.id}.{row.attempts if attempt is None else attempt}",
        },
    }
    if error_code is not None:
        event["errorCode"] = int(error_code)
    return event


def post_bandwidth_events(client, clinic, events):
    """Post a Bandwidth event array to the clinic's webhook with its basic-auth pair."""
    return client.post(
        f"/webhooks/bandwidth/{clinic.id}/messages",
        json=events,
        auth=(clinic.webhook_username, clinic.webhook_password),
    )


def post_bandwidth_event(client, row, event_type, error_code=None, attempt=None):
    """Post one Bandwidth status event for delivery ``row``."""
    clinic = db.session.get(Clinic, row.message.clinic_id)
    return post_bandwidth_events(client, clinic, [bandwidth_event(row, event_type, error_code, attempt)])


def post_failure(client, app, row, error_code):
    """Post the provider's failure callback with ``error_code`` for the delivery's current attempt."""
    if row.provider == "twilio":
        return post_twilio_status(client, app, row, "undelivered", error_code)
    return post_bandwidth_event(client, row, "message-failed", error_code)


def provider_creates(live):
    """Return the message-create requests the sandbox received, oldest first."""
    return [
        entry
        for entry in live.carrier.logged_requests()
        if entry["method"] == "POST" and entry["path"].endswith(("/Messages.json", "/messages"))
    ]


def run_send_job(app, message_id, channel="sms"):
    """Run the send job of the message's delivery once, in its own app context as a worker does.

    A burst of ``run_worker`` can wait up to a second for RQ's command listener to stop, so tests
    that only need one send call the job itself.
    """
    with app.app_context():
        row = db.session.execute(
            db.select(Delivery).where(Delivery.message_id == message_id, Delivery.channel == channel)
        ).scalar_one()
        return jobs.send_text(row.id)


def queued_jobs():
    """Return how many jobs wait in Pawpost's queues, now or scheduled for later."""
    return sum(
        queues.queue(name).count + queues.queue(name).scheduled_job_registry.count
        for name in queues.QUEUE_ORDER
    )

"""Texts in a known state for the callback and fallback benchmarks, and the callbacks that settle them."""

import time
from urllib.parse import urlencode

from sqlalchemy import text
from twilio.request_validator import RequestValidator

from bench import environment
from notifier import batch, queues
from portal.extensions import db
from portal.models import Clinic, Delivery

CHUNK = 1000


def sent_texts(clinic_id, count, number_prefix="+1555610"):
    """Store ``count`` texts whose SMS delivery the provider already took (status sent); return their delivery ids."""
    clinic = db.session.get(Clinic, clinic_id)
    delivery_ids = []
    for start in range(0, count, CHUNK):
        items = [
            batch.BatchItem(f"{number_prefix}{(start + i) % 1000:04d}", f"Bench callback text {start + i}.")
            for i in range(min(CHUNK, count - start))
        ]
        stored = batch.store_batch(clinic, items, "api")
        ids = [item.sms_delivery_id for item in stored]
        db.session.execute(
            text(
                "UPDATE deliveries SET status = 'sent', status_rank = 3, attempts = 1, "
                "provider_message_id = 'SMbench' || id, claimed_at = now() at time zone 'utc', "
                "updated_at = now() at time zone 'utc' WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        )
        db.session.commit()
        delivery_ids.extend(ids)
    return delivery_ids


def twilio_callback(base_url, clinic_id, delivery_id, status, error_code=None):
    """Return ``(method, path, headers, body)`` of a Twilio status callback, signed as Twilio signs it."""
    path = f"/webhooks/twilio/{clinic_id}/status?ref={delivery_id}.1"
    params = {
        "AccountSid": environment.TWILIO_SID,
        "ApiVersion": "2010-04-01",
        "From": "+15559990001",
        "MessageSid": f"SMbench{delivery_id}",
        "MessageStatus": status,
        "SmsSid": f"SMbench{delivery_id}",
        "SmsStatus": status,
        "To": "+15556100000",
    }
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    signature = RequestValidator(environment.TWILIO_TOKEN).compute_signature(base_url + path, params)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
        "User-Agent": "TwilioProxy/1.1",
    }
    return "POST", path, headers, urlencode(params)


def warm_up(run, per_clinic=20, timeout=60):
    """Send ``per_clinic`` texts from each fixture clinic and wait until all reach the provider.

    A new worker imports the provider SDK and opens its connections on its first send, so that
    send takes far longer than later ones. Production workers run for days.
    """
    settings = run.settings
    _calls, start = environment.provider_calls(settings)
    with run.app.app_context():
        for clinic_id in (run.fixtures.twilio_clinic_id, run.fixtures.bandwidth_clinic_id):
            clinic = db.session.get(Clinic, clinic_id)
            items = [batch.BatchItem(f"+1555660{i:04d}", f"Warm-up text {i}.") for i in range(per_clinic)]
            stored = batch.store_batch(clinic, items, "api")
            db.session.commit()
            # One job per text, not the batch jobs of fifty, so that every worker takes some.
            for item in stored:
                queues.enqueue_send(db.session.get(Delivery, item.sms_delivery_id))
    deadline = time.monotonic() + timeout
    while environment.provider_calls(settings, start)[1] - start < 2 * per_clinic:
        if time.monotonic() > deadline:
            raise RuntimeError(f"The warm-up texts did not all reach the provider within {timeout} s.")
        time.sleep(0.2)

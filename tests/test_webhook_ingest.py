"""Status-callback ingest: cached clinic credentials, the statements per callback and the rollup count.

The callbacks are built like those in ``test_webhooks.py``: a signed Twilio form post or a
Bandwidth event array with HTTP basic auth.
"""

import json
import threading
import time
from datetime import timedelta
from contextlib import contextmanager

import pytest
import requests
from sqlalchemy import event, func, update
from sqlalchemy.orm import Session

from conftest import TWILIO_TOKEN
from helpers import STATUS_EVENT_MODES, apply_queued, delivery, outbound_sms, provider_events, use_status_event_mode
from portal.extensions import db
from portal.models import STATUS_RANK, Clinic, Delivery, SmsHourlyStat, utcnow
from portal.models.stats import STRIPES
from test_webhooks import (
    CLIENT_NUMBER,
    TWILIO_SMS_SID,
    bandwidth_path,
    bandwidth_status,
    post_bandwidth,
    post_twilio,
    ref_of,
    twilio_params,
)

NEW_TOKEN = "rotated-twilio-auth-token"
NEW_PASSWORD = "rotated-callback-secret"


@pytest.fixture(autouse=True, params=STATUS_EVENT_MODES)
def status_event_mode(request, app, monkeypatch):
    """Run every test here with status events applied in the request, and again queued for the workers."""
    use_status_event_mode(app, monkeypatch, request.param)
    return request.param


@pytest.fixture
def twilio_sms(factory):
    clinic = factory.clinic("twilio", fallback=False)
    return outbound_sms(clinic, factory.client(clinic, CLIENT_NUMBER), provider_message_id=TWILIO_SMS_SID)


@pytest.fixture
def bandwidth_sms(factory):
    clinic = factory.clinic("bandwidth")
    return outbound_sms(clinic, factory.client(clinic, CLIENT_NUMBER))


@pytest.fixture
def short_credential_cache(app):
    """Make web processes keep clinic credentials for 0.2 s instead of a minute."""
    saved = app.config["PAWPOST_CALLBACK_CREDENTIALS_SECONDS"]
    app.config["PAWPOST_CALLBACK_CREDENTIALS_SECONDS"] = 0.2
    yield 0.2
    app.config["PAWPOST_CALLBACK_CREDENTIALS_SECONDS"] = saved


def change_elsewhere(clinic_id, **values):
    """Change a clinic without the ORM, as another web process or a SQL console would."""
    db.session.execute(update(Clinic.__table__).where(Clinic.__table__.c.id == clinic_id).values(**values))
    db.session.commit()


@contextmanager
def statements_on_this_thread():
    """Count the SQL statements this thread sends, so server threads of other tests do not count."""
    counted = []
    thread = threading.get_ident()

    def count(_connection, _cursor, statement, *_args):
        if threading.get_ident() == thread:
            counted.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield counted
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def twilio_post(client, app, sms, status, token=TWILIO_TOKEN):
    return post_twilio(client, app, sms.message.clinic_id, ref_of(sms), twilio_params(status), token=token)


def bandwidth_post(client, sms, event_type, password=None):
    clinic = sms.message.clinic
    auth = (clinic.webhook_username, password or clinic.webhook_password)
    return post_bandwidth(client, clinic, [bandwidth_status(sms, event_type)], auth=auth)


def change_delivery(delivery_id, **values):
    db.session.execute(update(Delivery.__table__).where(Delivery.__table__.c.id == delivery_id).values(**values))
    db.session.commit()


def rollup_total():
    db.session.rollback()
    return db.session.execute(db.select(func.coalesce(func.sum(SmsHourlyStat.count), 0))).scalar()


# Cached credentials


def test_twilio_new_token_accepted_at_once(client, app, twilio_sms):
    twilio_post(client, app, twilio_sms, "sent")
    change_elsewhere(twilio_sms.message.clinic_id, twilio_auth_token=NEW_TOKEN)

    response = twilio_post(client, app, twilio_sms, "delivered", token=NEW_TOKEN)

    assert response.status_code == 200
    assert delivery(twilio_sms.message_id, "sms").status == "delivered"


def test_twilio_old_token_rejected_after_cache_time(client, app, twilio_sms, short_credential_cache):
    twilio_post(client, app, twilio_sms, "sent")
    change_elsewhere(twilio_sms.message.clinic_id, twilio_auth_token=NEW_TOKEN)
    time.sleep(short_credential_cache + 0.1)

    response = twilio_post(client, app, twilio_sms, "delivered")

    assert response.status_code == 403
    assert delivery(twilio_sms.message_id, "sms").status == "sent"
    assert [event.outcome for event in provider_events()] == ["applied"]


def test_twilio_token_changed_here_rejected_at_once(client, app, twilio_sms):
    twilio_post(client, app, twilio_sms, "sent")
    clinic = db.session.get(Clinic, twilio_sms.message.clinic_id)
    clinic.twilio_auth_token = NEW_TOKEN
    db.session.commit()

    response = twilio_post(client, app, twilio_sms, "delivered")

    assert response.status_code == 403
    assert delivery(twilio_sms.message_id, "sms").status == "sent"


def test_twilio_old_token_cached_before_commit_rejected_after(client, app, twilio_sms):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("On SQLite the flushing session's write lock holds the callback until the commit")
    # Another session of this process, as a staff request would change it.
    with Session(db.engine) as other:
        other.get(Clinic, twilio_sms.message.clinic_id).twilio_auth_token = NEW_TOKEN
        other.flush()
        # Served between the flush and the commit, this callback still reads the old token.
        twilio_post(client, app, twilio_sms, "sent")
        other.commit()

    response = twilio_post(client, app, twilio_sms, "delivered")

    assert response.status_code == 403


def test_bandwidth_new_password_accepted_at_once(client, bandwidth_sms):
    bandwidth_post(client, bandwidth_sms, "message-sending")
    change_elsewhere(bandwidth_sms.message.clinic_id, webhook_password=NEW_PASSWORD)

    response = bandwidth_post(client, bandwidth_sms, "message-delivered", password=NEW_PASSWORD)

    assert response.status_code == 200
    assert delivery(bandwidth_sms.message_id, "sms").status == "delivered"


def test_bandwidth_old_password_rejected_after_cache_time(client, bandwidth_sms, short_credential_cache):
    old_password = bandwidth_sms.message.clinic.webhook_password
    bandwidth_post(client, bandwidth_sms, "message-sending")
    change_elsewhere(bandwidth_sms.message.clinic_id, webhook_password=NEW_PASSWORD)
    time.sleep(short_credential_cache + 0.1)

    response = bandwidth_post(client, bandwidth_sms, "message-delivered", password=old_password)

    assert response.status_code == 403
    assert delivery(bandwidth_sms.message_id, "sms").status == "sent"


def test_clinic_switched_provider_rejected_after_cache_time(client, app, twilio_sms, short_credential_cache):
    twilio_post(client, app, twilio_sms, "sent")
    change_elsewhere(twilio_sms.message.clinic_id, provider="bandwidth")
    time.sleep(short_credential_cache + 0.1)

    response = twilio_post(client, app, twilio_sms, "delivered")

    assert response.status_code == 403


# Statements per callback

def delivered_statements():
    """Return the statements of a delivered callback with the clinic's credentials cached.

    PostgreSQL moves the delivery, counts it in the hourly rollup and stores the raw event in
    one statement. SQLite finds the delivery first, then runs each step on its own. Reading the
    credentials adds one.
    """
    return 1 if db.engine.dialect.name == "postgresql" else 4


def test_twilio_delivered_statement_count(client, app, twilio_sms):
    twilio_post(client, app, twilio_sms, "sent")
    # Read before counting, because the test's ORM objects expired at the callback's commit.
    clinic_id, ref = twilio_sms.message.clinic_id, ref_of(twilio_sms)

    with statements_on_this_thread() as counted:
        response = post_twilio(client, app, clinic_id, ref, twilio_params("delivered"))

    assert response.status_code == 200
    assert len(counted) <= delivered_statements()
    assert delivery(twilio_sms.message_id, "sms").status == "delivered"


def test_bandwidth_delivered_statement_count(client, bandwidth_sms):
    bandwidth_post(client, bandwidth_sms, "message-sending")
    clinic = bandwidth_sms.message.clinic
    path, auth = bandwidth_path(clinic.id), (clinic.webhook_username, clinic.webhook_password)
    events = [bandwidth_status(bandwidth_sms, "message-delivered")]

    with statements_on_this_thread() as counted:
        response = client.post(path, json=events, auth=auth)

    assert response.status_code == 200
    assert len(counted) <= delivered_statements()
    assert delivery(bandwidth_sms.message_id, "sms").status == "delivered"


def test_first_callback_reads_credentials_once(client, app, twilio_sms):
    clinic_id, ref = twilio_sms.message.clinic_id, ref_of(twilio_sms)

    with statements_on_this_thread() as counted:
        response = post_twilio(client, app, clinic_id, ref, twilio_params("delivered"))

    assert response.status_code == 200
    assert len(counted) <= delivered_statements() + 1


# What the short path stores


def test_delivered_event_stored_whole(client, app, twilio_sms):
    twilio_post(client, app, twilio_sms, "sent")
    response = twilio_post(client, app, twilio_sms, "delivered")
    stored = provider_events()[-1]

    assert response.status_code == 200
    assert stored.clinic_id == twilio_sms.message.clinic_id
    assert stored.provider == "twilio"
    assert stored.kind == "status"
    assert stored.provider_message_id == TWILIO_SMS_SID
    assert stored.delivery_id == twilio_sms.id
    assert stored.status == "delivered"
    assert stored.error_code is None
    assert stored.outcome == "applied"
    assert json.loads(stored.payload)["MessageStatus"] == ["delivered"]
    assert stored.received_at is not None


def test_delivered_counted_in_its_stripe(client, app, twilio_sms):
    response = twilio_post(client, app, twilio_sms, "delivered")
    db.session.rollback()
    row = db.session.execute(db.select(SmsHourlyStat)).scalar_one()

    assert response.status_code == 200
    assert row.stripe == twilio_sms.id % STRIPES
    assert row.outcome == "delivered"
    assert row.count == 1


# Events that must not move the delivery, whichever path applies them: (case, outcome).
UNMOVED_EVENTS = [
    ("earlier attempt", "stale"),
    ("another clinic", "unmatched"),
    ("another message sid", "unmatched"),
    ("already delivered", "duplicate"),
    ("retry scheduled", "stale"),
]


@pytest.mark.parametrize(("case", "outcome"), UNMOVED_EVENTS, ids=[case for case, _ in UNMOVED_EVENTS])
def test_unmoved_delivered_event(client, app, factory, case, outcome):
    clinic = factory.clinic("twilio", fallback=False)
    sms = outbound_sms(clinic, factory.client(clinic, CLIENT_NUMBER), attempts=2, provider_message_id=TWILIO_SMS_SID)
    status_before = "delivered" if case == "already delivered" else "accepted"
    if case == "already delivered":
        change_delivery(sms.id, status="delivered", status_rank=STATUS_RANK["delivered"])
    if case == "retry scheduled":
        change_delivery(sms.id, next_attempt_at=utcnow() + timedelta(minutes=5))
    clinic_id = factory.clinic("twilio").id if case == "another clinic" else clinic.id
    ref = f"{sms.id}.1" if case == "earlier attempt" else f"{sms.id}.2"
    message_sid = "SM" + "9" * 32 if case == "another message sid" else TWILIO_SMS_SID

    response = post_twilio(client, app, clinic_id, ref, twilio_params("delivered", message_sid=message_sid))

    assert response.status_code == 200
    assert delivery(sms.message_id, "sms").status == status_before
    assert provider_events()[-1].outcome == outcome
    assert rollup_total() == 0


@pytest.mark.parametrize(
    ("statuses", "counted"),
    [
        (["delivered"], 1),
        (["delivered", "delivered"], 1),
        (["sent", "delivered", "sent", "delivered"], 1),
        (["sent"], 0),
        (["undelivered", "delivered"], 1),
    ],
)
def test_twilio_rollup_counts_text_once(client, app, twilio_sms, statuses, counted):
    for status in statuses:
        params = twilio_params(status, 30003 if status == "undelivered" else None)
        post_twilio(client, app, twilio_sms.message.clinic_id, ref_of(twilio_sms), params)

    assert rollup_total() == counted


@pytest.mark.parametrize(
    ("status", "final_status"),
    [("accepted", "sent"), ("sent", "sent"), ("delivered", "delivered")],
)
def test_bandwidth_event_sets_provider_id(client, factory, status, final_status):
    clinic = factory.clinic("bandwidth")
    sms = outbound_sms(clinic, factory.client(clinic, CLIENT_NUMBER), status=status)

    response = bandwidth_post(client, sms, "message-sending")
    stored = delivery(sms.message_id, "sms")

    assert response.status_code == 200
    assert stored.status == final_status
    assert stored.provider_message_id == "1741101377000abcdef"


def test_bandwidth_filtered_then_delivered_in_one_array(app, live, bandwidth_sms):
    clinic = bandwidth_sms.message.clinic
    events = [
        bandwidth_status(bandwidth_sms, "message-failed", error_code=4470),
        bandwidth_status(bandwidth_sms, "message-delivered"),
    ]

    # Over HTTP with a timeout: the delivered event must not wait for a lock its own request holds.
    response = requests.post(
        live.url + bandwidth_path(clinic.id), json=events, auth=(clinic.webhook_username, clinic.webhook_password), timeout=10
    )
    apply_queued(app)

    assert response.status_code == 200
    assert delivery(bandwidth_sms.message_id, "sms").status == "undelivered"
    assert delivery(bandwidth_sms.message_id, "pointer").status == "queued"
    assert [event.outcome for event in provider_events()] == ["applied", "duplicate"]


def test_bandwidth_sent_then_filtered_in_one_array(client, bandwidth_sms):
    clinic = bandwidth_sms.message.clinic
    events = [
        bandwidth_status(bandwidth_sms, "message-sending"),
        bandwidth_status(bandwidth_sms, "message-failed", error_code=4770),
    ]

    response = post_bandwidth(client, clinic, events)
    sms = delivery(bandwidth_sms.message_id, "sms")

    assert response.status_code == 200
    assert sms.status == "undelivered"
    assert sms.category == "carrier_filtered"
    assert delivery(bandwidth_sms.message_id, "pointer").status == "queued"
    assert delivery(bandwidth_sms.message_id, "portal").chat_notification is True
    assert [event.outcome for event in provider_events()] == ["applied", "applied"]
    assert rollup_total() == 1


@pytest.mark.parametrize("matched", [True, False])
def test_twilio_long_error_code_stored_cut(client, app, twilio_sms, matched):
    ref = ref_of(twilio_sms) if matched else "999999.1"
    params = twilio_params("undelivered", error_code="3" * 40)

    response = post_twilio(client, app, twilio_sms.message.clinic_id, ref, params)
    events = provider_events()

    assert response.status_code == 200
    assert len(events) == 1
    assert events[0].error_code == "3" * 16
    assert json.loads(events[0].payload)["ErrorCode"] == ["3" * 40]

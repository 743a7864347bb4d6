"""Demo data: two clinics on the sandbox carrier, with clients whose numbers exercise each outcome."""

import json
import os
import random
from datetime import timedelta

from flask import current_app

from portal.extensions import db
from notifier import stats
from notifier.sending import find_or_create_client, send_message
from portal.models import ApiToken, Client, Clinic, SmsHourlyStat, StaffUser, utcnow

DEMO_PASSWORD = "pawpost-demo"
# The sandbox carrier decides each outcome from the last two digits of the number.
OUTCOMES = {
    "01": "Delivered",
    "10": "Carrier filtered",
    "20": "Landline",
    "30": "Opted out",
    "40": "Invalid number",
    "50": "Blocked",
    "60": "Temporary, then delivered",
    "70": "No final status",
    "80": "Clinic setup problem",
    "90": "Unmapped error code",
    "99": "Filters every text",
}
CLINICS = (
    {
        "name": "Riverside Animal Hospital",
        "provider": "bandwidth",
        "sender_number": "+15552000001",
        "number_prefix": "+155520100",
        "staff_email": "staff@riverside.example",
        "token_env": "PAWPOST_DEMO_TOKEN_BANDWIDTH",
        "bandwidth_account_id": "9900001",
        "bandwidth_username": "demo-api-user",
        "bandwidth_password": "demo-api-password",
        "bandwidth_application_id": "demo-riverside-app",
        "webhook_username": "riverside-callbacks",
        "webhook_password": "demo-callback-password",
    },
    {
        "name": "Maple Street Vets",
        "provider": "twilio",
        "sender_number": "+15553000001",
        "number_prefix": "+155530100",
        "staff_email": "staff@maple.example",
        "token_env": "PAWPOST_DEMO_TOKEN_TWILIO",
        "twilio_account_sid": "AC" + "d3m0" * 8,
        "twilio_auth_token": "demo-twilio-auth-token",
    },
)
# Upper bounds of synthetic daily failures per category, so the dashboard history shows them all.
HISTORY_FAILURES = {
    "bandwidth": {"carrier_filtered": 9, "landline": 6, "invalid_number": 3, "blocked": 2, "temporary": 2, "clinic_setup": 1, "unknown": 1, "opted_out": 1},
    "twilio": {"carrier_filtered": 2, "landline": 9, "invalid_number": 4, "blocked": 1, "temporary": 3, "clinic_setup": 1, "unknown": 1, "opted_out": 2},
}
CLINIC_FIELDS = (
    "provider", "sender_number", "bandwidth_account_id", "bandwidth_username", "bandwidth_password",
    "bandwidth_application_id", "webhook_username", "webhook_password", "twilio_account_sid",
    "twilio_auth_token",
)


def seed():
    """Create or refresh the demo rows; return lines describing them for the terminal."""
    lines = []
    for spec in CLINICS:
        clinic = _clinic(spec)
        _staff(clinic, spec["staff_email"])
        for suffix, label in OUTCOMES.items():
            _client(clinic, spec["number_prefix"] + suffix, f"{label} ({suffix})")
        raw = _api_token(clinic, os.environ.get(spec["token_env"]))
        lines.append(f"{clinic.name} ({clinic.provider}): staff {spec['staff_email']} / {DEMO_PASSWORD}, API token {raw}")
    _staff(None, "operator@pawpost.example")
    db.session.commit()
    lines.append(f"Operator (all clinics): operator@pawpost.example / {DEMO_PASSWORD}")
    return lines


def seed_history(days=30):
    """Add synthetic SMS outcome counts for the past days, so the dashboard has a history to show.

    Real texts sent in the demo add to the same counts. Runs only when a clinic has no history.
    """
    rng = random.Random(7)
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    for clinic in db.session.execute(db.select(Clinic)).scalars():
        if db.session.execute(db.select(SmsHourlyStat.id).where(SmsHourlyStat.clinic_id == clinic.id).limit(1)).first():
            continue
        for day in range(1, days + 1):
            hour = now - timedelta(days=day, hours=rng.randint(0, 8))
            stats.add_history(clinic.id, hour, "delivered", rng.randint(150, 240))
            for category, weight in HISTORY_FAILURES[clinic.provider].items():
                count = rng.randint(0, weight)
                if count:
                    stats.add_history(clinic.id, hour, "failed", count, category)
            stats.add_history(clinic.id, hour, "suppressed", rng.randint(0, 3), "opted_out")
    db.session.commit()


def send_sample_traffic():
    """Send one text from each demo clinic to each outcome number, through the normal send path."""
    sent = 0
    for spec in CLINICS:
        clinic = db.session.execute(db.select(Clinic).where(Clinic.name == spec["name"])).scalar_one()
        for suffix in OUTCOMES:
            client, _created = find_or_create_client(clinic, spec["number_prefix"] + suffix)
            send_message(client, f"Reminder: {client.name or 'your pet'} has a checkup next week.", source="api")
            sent += 1
    return sent


def sandbox_entries(clinic, base_url):
    """Return the sandbox config entries of ``clinic``: its Bandwidth application (or None) and its number."""
    if clinic.provider == "bandwidth":
        application = {
            "callback_url": f"{base_url}/webhooks/bandwidth/{clinic.id}/messages",
            "username": clinic.webhook_username,
            "password": clinic.webhook_password,
        }
        number = {
            "provider": "bandwidth",
            "application_id": clinic.bandwidth_application_id,
            "account_id": clinic.bandwidth_account_id,
        }
        return application, number
    number = {
        "provider": "twilio",
        "inbound_url": f"{base_url}/webhooks/twilio/{clinic.id}/inbound",
        "account_sid": clinic.twilio_account_sid,
        "auth_token": clinic.twilio_auth_token,
    }
    return None, number


def write_sandbox_config(path):
    """Write the sandbox carrier's config: where each demo clinic's callbacks and inbound texts go."""
    base = current_app.config["PAWPOST_BASE_URL"]
    applications, numbers = {}, {}
    for clinic in db.session.execute(db.select(Clinic)).scalars():
        application, numbers[clinic.sender_number] = sandbox_entries(clinic, base)
        if application is not None:
            applications[clinic.bandwidth_application_id] = application
    config = {"bandwidth_applications": applications, "numbers": numbers, "allowed_link_prefix": base + "/p/"}
    # Write then rename, so the sandbox, which rereads the file, never reads half of it.
    partial = f"{path}.part"
    with open(partial, "w") as handle:
        json.dump(config, handle, indent=2)
    os.replace(partial, path)


def _clinic(spec):
    clinic = db.session.execute(db.select(Clinic).where(Clinic.name == spec["name"])).scalar_one_or_none()
    if clinic is None:
        clinic = Clinic(
            name=spec["name"],
            fallback_enabled=Clinic.default_fallback(spec["provider"]),
            provider_handles_keywords=Clinic.default_handles_keywords(spec["provider"]),
        )
        db.session.add(clinic)
    for field in CLINIC_FIELDS:
        setattr(clinic, field, spec.get(field))
    db.session.flush()
    return clinic


def _staff(clinic, email):
    user = db.session.execute(db.select(StaffUser).where(StaffUser.email == email)).scalar_one_or_none()
    if user is None:
        user = StaffUser(email=email, name=email.split("@")[0].title(), clinic=clinic, is_operator=clinic is None)
        user.set_password(DEMO_PASSWORD)
        db.session.add(user)
    return user


def _client(clinic, number, name):
    exists = db.session.execute(
        db.select(Client).where(Client.clinic_id == clinic.id, Client.mobile_number == number)
    ).scalar_one_or_none()
    if exists is None:
        db.session.add(Client(clinic_id=clinic.id, mobile_number=number, name=name))


def _api_token(clinic, raw):
    """Return the demo token: the one from the environment when set, else a fresh one."""
    if raw:
        hashed = ApiToken.hash(raw)
        known = db.session.execute(db.select(ApiToken).where(ApiToken.token_hash == hashed)).scalar_one_or_none()
        if known is not None:
            return raw
    row, raw = ApiToken.issue(clinic, "Demo PIMS", raw)
    db.session.add(row)
    return raw

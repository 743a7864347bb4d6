"""Demo data: two clinics on the sandbox carrier, with clients whose numbers exercise each outcome."""

import json
import os

from flask import current_app

from portal.extensions import db
from portal.models import ApiToken, Client, Clinic, StaffUser

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


def write_sandbox_config(path):
    """Write the sandbox carrier's config: where each demo Bandwidth application posts callbacks."""
    base = current_app.config["PAWPOST_BASE_URL"]
    applications, numbers = {}, {}
    for clinic in db.session.execute(db.select(Clinic)).scalars():
        if clinic.provider == "bandwidth":
            applications[clinic.bandwidth_application_id] = {
                "callback_url": f"{base}/webhooks/bandwidth/{clinic.id}/messages",
                "username": clinic.webhook_username,
                "password": clinic.webhook_password,
            }
            numbers[clinic.sender_number] = {
                "provider": "bandwidth",
                "application_id": clinic.bandwidth_application_id,
                "account_id": clinic.bandwidth_account_id,
            }
        else:
            numbers[clinic.sender_number] = {
                "provider": "twilio",
                "inbound_url": f"{base}/webhooks/twilio/{clinic.id}/inbound",
                "account_sid": clinic.twilio_account_sid,
                "auth_token": clinic.twilio_auth_token,
            }
    config = {"bandwidth_applications": applications, "numbers": numbers, "allowed_link_prefix": base + "/p/"}
    # Write then rename, so the sandbox, which rereads the file, never sees half of it.
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

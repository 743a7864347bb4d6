"""One-time Pet Portal sign-in codes, sent by email or by SMS through the clinic's provider.

The raw code exists only inside the job that sends it. The web request queues a client id and
a channel, and the job draws the code, stores its hash and sends it, so neither the RQ job in
Redis nor the database ever contains a usable code.
"""

import logging
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import redis
from flask import current_app
from markupsafe import escape

from notifier import mail, policy, providers, queues
from notifier.gsm import to_gsm7
from notifier.providers import OutboundText, ProviderError, ProviderUnreachable
from portal.extensions import db
from portal.models import Client, LoginCode, utcnow

log = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_MINUTES = 10
# A code is dead after this many wrong entries, so guessing 6 digits stays hopeless.
MAX_FAILED_ATTEMPTS = 5


def can_receive(client, channel):
    """Return whether ``client`` can get a code by ``channel``.

    Email needs an address the client verified and a configured mail server. SMS needs a number
    that Pawpost may text from the clinic's sender: not opted out and not known to be a landline.
    """
    if channel == "email":
        return bool(client.email and client.email_verified_at) and mail.configured()
    if channel == "sms":
        return policy.suppression_reason(client.clinic, client.mobile_number) is None
    return False


def enqueue_send_code(client_id, channel):
    """Queue the job that sends ``client_id`` a code; return False when Redis is unreachable."""
    try:
        queues.queue("signin").enqueue(
            "notifier.login_codes.send_login_code",
            client_id,
            channel,
            # A job still queued after a code's lifetime is dropped, because the person has stopped waiting.
            ttl=CODE_MINUTES * 60,
            result_ttl=600,
            failure_ttl=24 * 3600,
        )
    except redis.exceptions.RedisError as exc:
        log.warning("Could not queue a sign-in code for client %s (%s).", client_id, exc)
        return False
    return True


def send_login_code(client_id, channel):
    """Draw a code for the client, store only its hash, then send it by ``channel``.

    Safe to run twice: a second run sends a second valid code, and either one signs in.
    """
    client = db.session.get(Client, client_id)
    if client is None:
        return "missing"
    if not can_receive(client, channel):
        log.info("Client %s can no longer get a sign-in code by %s; none sent.", client.id, channel)
        return "unavailable"

    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    row = LoginCode(
        client_id=client.id,
        channel=channel,
        code_hash=LoginCode.hash(client.id, code),
        expires_at=utcnow() + timedelta(minutes=CODE_MINUTES),
    )
    db.session.add(row)
    db.session.commit()

    if channel == "sms":
        return _send_sms(client, row, code)
    return _send_email(client, row, code)


def sms_text(clinic_name, code, base_url):
    """Return the code text, ending in the origin-bound line (``@host #code``) that phones autofill from."""
    clinic = " ".join(to_gsm7(clinic_name).split()) or "Your clinic"
    host = urlsplit(base_url).hostname
    return (
        f"{clinic}: your Pet Portal sign-in code is {code}. It expires in {CODE_MINUTES} minutes. "
        f"Don't share it with anyone.\n\n@{host} #{code}"
    )


def _send_sms(client, row, code):
    clinic = client.clinic
    adapter = providers.for_clinic(
        clinic,
        sandbox_url=current_app.config["PAWPOST_SANDBOX_URL"],
        timeout=current_app.config["PAWPOST_SEND_TIMEOUT_SECONDS"],
    )
    text = OutboundText(
        to=client.mobile_number,
        sender=clinic.sender_number,
        body=sms_text(clinic.name, code, current_app.config["PAWPOST_BASE_URL"]),
        expires_at=row.expires_at,
    )
    try:
        result = adapter.send(text)
    except ProviderError as exc:
        log.warning("Sign-in code %s for client %s was rejected by %s with code %s.", row.id, client.id, clinic.provider, exc.code)
        return "failed"
    except ProviderUnreachable as exc:
        # Not retried: a retry would send a second code, and the person can ask for one.
        log.warning("Sign-in code %s for client %s got no response from %s (%s).", row.id, client.id, clinic.provider, exc)
        return "unconfirmed"
    log.info("Sign-in code %s for client %s sent by SMS as %s.", row.id, client.id, result.provider_message_id)
    return "sent"


def _send_email(client, row, code):
    clinic_name = client.clinic.name
    subject = f"Your Pet Portal sign-in code: {code}"
    text = (
        f"Your sign-in code for the Pet Portal of {clinic_name} is {code}.\n\n"
        f"It expires in {CODE_MINUTES} minutes and works once. If you did not ask for it, ignore this email."
    )
    html = (
        f"<p>Your sign-in code for the Pet Portal of {escape(clinic_name)} is</p>"
        f'<p style="font-size:28px;font-weight:700;letter-spacing:4px">{code}</p>'
        f"<p>It expires in {CODE_MINUTES} minutes and works once. If you did not ask for it, ignore this email.</p>"
    )
    try:
        mail.send_mail(client.email, subject, text, html, clinic_name)
    except mail.MailError as exc:
        log.warning("Sign-in code %s for client %s could not be emailed (%s).", row.id, client.id, type(exc).__name__)
        return "failed"
    log.info("Sign-in code %s for client %s sent by email.", row.id, client.id)
    return "sent"

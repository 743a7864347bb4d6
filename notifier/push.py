"""Web Push: VAPID keys, checks on browser subscriptions, and one notification per subscription.

A notification carries the clinic's name, a generic line and a link, never the message text,
because phones show notifications on the lock screen. Subscriptions belong to a person: every
client record with the same mobile number (one per clinic) reaches the same browsers.
"""

import base64
import ipaddress
import json
import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, update

from config import base64url_bytes
from portal.extensions import db
from portal.inputs import storable_text
from portal.models import PushSubscription, utcnow
from portal.threads import person_client_ids

log = logging.getLogger(__name__)

NOTIFICATION_BODY = "You have a new message. Tap to read it in your Pet Portal."
# Push services keep a notification this long for a device that is offline.
TTL_SECONDS = 24 * 3600
MAX_ENDPOINT_CHARS = 1000
# An estimate well above the devices one person uses. Past it, the oldest subscription makes room.
MAX_SUBSCRIPTIONS_PER_PERSON = 10
# Development and test servers may also push over plain HTTP to a stand-in on these hosts.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
GONE_STATUSES = (404, 410)


class InvalidSubscription(ValueError):
    """A malformed subscription from a browser. The text names the field and the rule."""


class EndpointTaken(Exception):
    """The endpoint is stored for another client, with keys that differ from the ones sent."""


@dataclass
class PushOutcome:
    """The counts and failures of one round of notifications to a person's subscriptions."""

    delivered: int = 0
    removed: int = 0
    # (error code, temporary) for each subscription that failed without being removed.
    failures: list = field(default_factory=list)


def configured():
    """Return True when both VAPID keys are set, which turns Web Push on."""
    return bool(current_app.config["PAWPOST_VAPID_PUBLIC_KEY"] and current_app.config["PAWPOST_VAPID_PRIVATE_KEY"])


def log_status(app):
    """Log at start whether Web Push is on, and how to turn it on when it is off."""
    if app.config["PAWPOST_VAPID_PUBLIC_KEY"]:
        log.info("Web Push is on.")
        return
    log.warning(
        "Web Push is off: PAWPOST_VAPID_PUBLIC_KEY and PAWPOST_VAPID_PRIVATE_KEY are not set. "
        "Run `flask push generate-vapid-keys` and set both to turn it on."
    )


def generate_vapid_keys():
    """Return a new P-256 key pair as ``(public_key, private_key)``, both unpadded base64url."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    private = key.private_numbers().private_value.to_bytes(32, "big")
    return _base64url(public), _base64url(private)


def _base64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def skip_reason(client):
    """Return why ``client`` gets no push for a message, or None when they should get one."""
    if not configured():
        return "not_configured"
    if not client.push_enabled:
        return "opted_out"
    exists = db.session.execute(
        db.select(PushSubscription.id).where(PushSubscription.client_id.in_(person_client_ids(client))).limit(1)
    ).first()
    if exists is None:
        return "no_subscription"
    return None


def parse_subscription(data, environment):
    """Return ``(endpoint, p256dh, auth)`` from the JSON of a browser's PushSubscription.

    Raises InvalidSubscription naming the field that is wrong.
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(data, dict):
        raise InvalidSubscription('Send the subscription as JSON: {"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}.')
    endpoint = data.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise InvalidSubscription("endpoint is missing.")
    if len(endpoint) > MAX_ENDPOINT_CHARS:
        raise InvalidSubscription(f"endpoint is {len(endpoint)} characters long, over the limit of {MAX_ENDPOINT_CHARS}.")
    _check_endpoint(endpoint, environment)

    keys = data.get("keys")
    if not isinstance(keys, dict):
        raise InvalidSubscription("keys is missing. Send keys.p256dh and keys.auth from PushSubscription.toJSON().")
    p256dh = _key(keys, "p256dh")
    raw = base64url_bytes(p256dh)
    if raw is None or len(raw) != 65 or raw[0] != 4:
        raise InvalidSubscription("keys.p256dh must be an uncompressed P-256 public key (65 bytes) in base64url.")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise InvalidSubscription("keys.p256dh is not a point on the P-256 curve.") from None
    auth = _key(keys, "auth")
    raw = base64url_bytes(auth)
    if raw is None or len(raw) != 16:
        raise InvalidSubscription("keys.auth must be a 16-byte secret in base64url.")
    return endpoint, p256dh, auth


def _key(keys, name):
    value = keys.get(name)
    # Browsers send unpadded base64url, so padding is dropped and equal keys compare equal.
    return value.rstrip("=") if isinstance(value, str) else None


def _check_endpoint(endpoint, environment):
    parts = urlsplit(endpoint)
    try:
        parts.port
    except ValueError:
        raise InvalidSubscription("endpoint has an invalid port.") from None
    host = parts.hostname or ""
    local_allowed = environment in ("development", "test")
    if parts.scheme == "https" and _is_public_name(host) and not parts.username:
        return
    if parts.scheme == "http" and local_allowed and host in LOOPBACK_HOSTS and not parts.username:
        return
    rule = "an https:// URL on a push service's host name"
    if local_allowed:
        rule += ", or an http://127.0.0.1 or http://localhost URL in development and test"
    raise InvalidSubscription(f"endpoint must be {rule}.")


def _is_public_name(host):
    # Keeps the worker from posting to addresses inside the network it runs in.
    # NOTE: a public name that resolves to a private address is not caught here.
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    return "." in host and not host.endswith((".localhost", ".local", ".internal"))


def save_subscription(client, endpoint, p256dh, auth, user_agent):
    """Store or refresh the subscription of one of ``client``'s browsers, and return ``(row, created)``.

    Raises EndpointTaken when the endpoint belongs to another person with different keys. The
    same browser signed in as another person sends the same keys, so it moves to this client.
    """
    row = db.session.execute(db.select(PushSubscription).where(PushSubscription.endpoint == endpoint)).scalar_one_or_none()
    if row is not None and not owns(client, row) and (row.p256dh, row.auth) != (p256dh, auth):
        raise EndpointTaken(row.id)
    created = row is None
    if created:
        _make_room(client)
        row = PushSubscription(client_id=client.id, endpoint=endpoint)
        db.session.add(row)
    row.client_id = client.id
    row.p256dh, row.auth = p256dh, auth
    # A browser's own header, kept only to tell devices apart. A NUL or lone surrogate in it cannot be stored.
    row.user_agent = storable_text(user_agent or "")[:200] or None
    return row, created


def owns(client, subscription):
    """Return True when ``subscription`` belongs to the person ``client`` is a record of."""
    return subscription.client_id in db.session.execute(person_client_ids(client)).scalars().all()


def _make_room(client):
    rows = db.session.execute(
        db.select(PushSubscription.id)
        .where(PushSubscription.client_id.in_(person_client_ids(client)))
        .order_by(PushSubscription.created_at.desc(), PushSubscription.id.desc())
        .offset(MAX_SUBSCRIPTIONS_PER_PERSON - 1)
    ).scalars().all()
    if rows:
        db.session.execute(
            delete(PushSubscription)
            .where(PushSubscription.id.in_(rows))
            .execution_options(synchronize_session=False)
        )
        log.info("Client %s: removed %s oldest push subscriptions to make room.", client.id, len(rows))


def notify(message):
    """Send one notification about ``message`` to each subscription of the person it is for.

    Subscriptions the push service reports gone (404 or 410) are deleted. The caller commits.
    """
    # pywebpush, py-vapid and http-ece, with aiohttp, requests and cryptography, add about 23 MB
    # of RSS (measured on Python 3.11), so they load at a worker's first push, not in every process.
    import requests
    from py_vapid import Vapid

    subscriptions = db.session.execute(
        db.select(PushSubscription)
        .where(PushSubscription.client_id.in_(person_client_ids(message.client)))
        .order_by(PushSubscription.id)
    ).scalars().all()
    payload = json.dumps(
        {
            "title": message.clinic.name,
            "body": NOTIFICATION_BODY,
            "url": f"{current_app.config['PAWPOST_BASE_URL']}/inbox/messages/{message.id}",
            # Repeats of one message replace each other on the device instead of piling up.
            "tag": f"message-{message.id}",
        }
    )
    vapid = Vapid.from_raw(current_app.config["PAWPOST_VAPID_PRIVATE_KEY"].encode())
    outcome = PushOutcome()
    with requests.Session() as session:
        for subscription in subscriptions:
            result, code = _send_one(session, vapid, subscription, payload)
            _record(outcome, subscription, message, result, code)
    return outcome


def _send_one(session, vapid, subscription, payload):
    """Return ``(result, code)``: delivered, gone, temporary or rejected, with the HTTP status or error."""
    import requests
    from http_ece import ECEException
    from pywebpush import WebPushException, webpush

    try:
        webpush(
            subscription_info={"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}},
            data=payload,
            vapid_private_key=vapid,
            # pywebpush 2.5.0 adds aud (the endpoint's origin) and exp (12 hours ahead) to these claims.
            vapid_claims={"sub": current_app.config["PAWPOST_VAPID_SUBJECT"]},
            timeout=current_app.config["PAWPOST_SEND_TIMEOUT_SECONDS"],
            ttl=TTL_SECONDS,
            requests_session=session,
        )
    except WebPushException as exc:
        status = exc.status_code
        if status in GONE_STATUSES:
            return "gone", str(status)
        if status is None:
            return "rejected", "invalid"
        if status == 429 or status >= 500:
            return "temporary", str(status)
        return "rejected", str(status)
    except requests.RequestException:
        return "temporary", "connection"
    except (ECEException, ValueError):
        # Keys the encryption cannot use. They were checked when stored, so this is rare.
        return "gone", "invalid_keys"
    return "delivered", "201"


def _record(outcome, subscription, message, result, code):
    if result == "delivered":
        outcome.delivered += 1
        db.session.execute(
            update(PushSubscription)
            .where(PushSubscription.id == subscription.id)
            .values(last_success_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    elif result == "gone":
        outcome.removed += 1
        db.session.execute(
            delete(PushSubscription)
            .where(PushSubscription.id == subscription.id)
            .execution_options(synchronize_session=False)
        )
        log.info("Push subscription %s of client %s is gone (%s), so it was deleted.", subscription.id, message.client_id, code)
    else:
        outcome.failures.append((code, result == "temporary"))
        log.warning("Push to subscription %s for message %s failed: %s (%s).", subscription.id, message.id, code, result)

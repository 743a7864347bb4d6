"""Pet Portal sign-in by a one-time code sent to a verified email address or a textable mobile number.

The pages respond the same way whether or not the address belongs to a client, so they cannot be
used to learn who is a clinic's client.
"""

import hmac
import logging
import time
import unicodedata

from email_validator import EmailNotValidError, validate_email
from flask import flash, redirect, render_template, request, session, url_for
from flask_login import login_user
from limits import parse as parse_limit
from sqlalchemy import func, update

from notifier import login_codes
from notifier.phone import InvalidPhoneNumber, mask, normalize
from portal.auth import safe_next
from portal.extensions import db
from portal.forms import CodeEntryForm, CodeRequestForm
from portal.models import Client, Clinic, LoginCode, utcnow
from portal.petportal import bp
from portal.ratelimit import current_limiter

log = logging.getLogger(__name__)

# Code requests for one address, counted whether or not it belongs to a client, so the limit reveals nothing.
ADDRESS_LIMIT = parse_limit("5 per hour")
# Codes sent to one client across all their addresses. Requests past the limit send nothing.
CLIENT_LIMIT = parse_limit("5 per hour")
# The code page drops the stored address after this long, twice a code's lifetime.
PENDING_SECONDS = 2 * login_codes.CODE_MINUTES * 60
SESSION_KEY = "portal_login"


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Ask for an email address or mobile number and send a sign-in code to it if it is a client's."""
    form = CodeRequestForm()
    next_path = safe_next(request.args.get("next"))
    if not form.validate_on_submit():
        return render_template("portal/login.html", form=form, next_path=next_path)

    address = parse_address(form.address.data)
    if address is None:
        form.address.errors.append(
            "Enter an email address such as pat@example.com, or a mobile number such as (555) 123-4567."
        )
        return render_template("portal/login.html", form=form, next_path=next_path), 400
    if not current_limiter().hit(ADDRESS_LIMIT, "portal-code-address", address.key):
        reset = current_limiter().get_window_stats(ADDRESS_LIMIT, "portal-code-address", address.key).reset_time
        minutes = max(1, round((reset - time.time()) / 60))
        form.address.errors.append(
            f"Too many codes were requested for this address. Try again in {minutes} minutes, "
            "or open the newest link your clinic texted or emailed you."
        )
        return render_template("portal/login.html", form=form, next_path=next_path), 429

    _queue_code(address)
    session[SESSION_KEY] = {"kind": address.kind, "values": address.values, "next": next_path, "at": time.time()}
    return redirect(url_for("portal.login_code"))


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    """Check a sign-in code and sign the pet parent in. A wrong code counts as a failed attempt on each active code."""
    pending = _pending_login()
    if pending is None:
        flash("Enter your email address or mobile number to get a sign-in code.", "info")
        return redirect(url_for("portal.login"))
    form = CodeEntryForm()
    shown_address = _masked(pending)
    if not form.validate_on_submit():
        return render_template("portal/login_code.html", form=form, address=shown_address)

    entered = "".join(form.code.data.split()).replace("-", "")
    if entered.isdecimal():
        # Digits typed on another script's keyboard, such as full-width １２３, count as 0 to 9.
        entered = "".join(str(unicodedata.decimal(char)) for char in entered)
    if not (entered.isascii() and entered.isdigit() and len(entered) == login_codes.CODE_DIGITS):
        form.code.errors.append(f"Enter the {login_codes.CODE_DIGITS} digits of the code, such as 123456.")
        return render_template("portal/login_code.html", form=form, address=shown_address), 400

    client = _redeem(_candidate_ids(pending), entered)
    if client is None:
        form.code.errors.append(
            "That code is wrong or has expired. Check the newest code we sent, or request a new code."
        )
        return render_template("portal/login_code.html", form=form, address=shown_address), 400

    login_user(client, remember=form.remember.data)
    session.pop(SESSION_KEY, None)
    log.info("Client %s signed in with a code.", client.id)
    return redirect(safe_next(pending.get("next")) or url_for("portal.inbox"))


class Address:
    """A normalised email address or the E.164 forms of a mobile number, as typed on the sign-in page."""

    def __init__(self, kind, values):
        self.kind = kind
        self.values = values
        # The rate-limit key: every spelling of one address shares it.
        self.key = kind + ":" + "|".join(values)


def parse_address(raw):
    """Return the Address typed in ``raw``, or None when it is neither an email address nor a phone number."""
    text = (raw or "").strip()
    if "@" in text:
        try:
            email = validate_email(text, check_deliverability=False).normalized
        except EmailNotValidError:
            return None
        return Address("email", [email.lower()])
    numbers = set()
    # A number without a country code is read as each clinic's country would read it.
    for (country,) in db.session.execute(db.select(Clinic.country).distinct()).all():
        try:
            numbers.add(normalize(text, country)[0])
        except InvalidPhoneNumber:
            continue
    if not numbers:
        try:
            numbers.add(normalize(text, "US")[0])
        except InvalidPhoneNumber:
            return None
    return Address("phone", sorted(numbers))


def _candidates(kind, values):
    statement = db.select(Client).order_by(Client.id.desc())
    if kind == "email":
        statement = statement.where(func.lower(Client.email).in_(values), Client.email_verified_at.is_not(None))
    else:
        statement = statement.where(Client.mobile_number.in_(values))
    return db.session.execute(statement).scalars().all()


def _candidate_ids(pending):
    return [client.id for client in _candidates(pending["kind"], pending["values"])]


def _queue_code(address):
    channel = "email" if address.kind == "email" else "sms"
    recipient = next((c for c in _candidates(address.kind, address.values) if login_codes.can_receive(c, channel)), None)
    if recipient is None:
        log.info("Sign-in code requested for an address with no reachable client; nothing sent.")
        return
    if not current_limiter().hit(CLIENT_LIMIT, "portal-code-client", str(recipient.id)):
        log.warning("Client %s reached the sign-in code limit; no code sent.", recipient.id)
        return
    login_codes.enqueue_send_code(recipient.id, channel)
    log.info("Sign-in code by %s queued for client %s.", channel, recipient.id)


def _redeem(client_ids, entered):
    """Spend the active code of ``client_ids`` that matches ``entered`` and return its client, or None."""
    if not client_ids:
        return None
    active = db.session.execute(
        db.select(LoginCode).where(
            LoginCode.client_id.in_(client_ids),
            LoginCode.used_at.is_(None),
            LoginCode.expires_at > utcnow(),
            LoginCode.failed_attempts < login_codes.MAX_FAILED_ATTEMPTS,
        )
    ).scalars().all()
    match = next((c for c in active if hmac.compare_digest(c.code_hash, LoginCode.hash(c.client_id, entered))), None)
    if match is None:
        _count_failure([code.id for code in active])
        return None
    # Conditional, so one code signs in once even when submitted twice at the same moment.
    spent = db.session.execute(
        update(LoginCode)
        .where(LoginCode.id == match.id, LoginCode.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if spent:
        # The client's other codes are no longer needed, and each one left active is one more to guess.
        db.session.execute(
            update(LoginCode)
            .where(LoginCode.client_id == match.client_id, LoginCode.used_at.is_(None))
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return db.session.get(Client, match.client_id) if spent else None


def _count_failure(code_ids):
    if code_ids:
        db.session.execute(
            update(LoginCode)
            .where(LoginCode.id.in_(code_ids))
            .values(failed_attempts=LoginCode.failed_attempts + 1)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        log.info("Wrong sign-in code entered; %s active code(s) counted a failed attempt.", len(code_ids))


def _pending_login():
    pending = session.get(SESSION_KEY)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    return pending


def _masked(pending):
    value = pending["values"][0]
    if pending["kind"] == "phone":
        return mask(value)
    local, _, domain = value.partition("@")
    return f"{local[:1]}•••@{domain}"


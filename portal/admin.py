"""Staff admin: sign-in, clients, conversations and the send form."""

import logging
from datetime import timedelta

import redis
from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_user, logout_user
from limits import parse as parse_limit

from notifier import media, outbound_media
from notifier.explain import staff_message
from notifier.sending import InvalidMessage, check_new_number, find_or_create_client, send_message
from notifier.timeline import timeline
from portal.auth import safe_next, staff_required
from portal.extensions import db
from portal.forms import ConfirmForm, NewConversationForm, SendTextForm, StaffLoginForm
from portal.models import Attachment, Client, Consent, Message, PhoneLine, StaffUser, utcnow
from portal.ratelimit import current_limiter

log = logging.getLogger(__name__)
bp = Blueprint("admin", __name__, url_prefix="/admin")

# Five wrong passwords in a row lock a staff account for fifteen minutes.
LOCKOUT_AFTER = 5
LOCKOUT_FOR = timedelta(minutes=15)
# Attempts one address may make, whatever the accounts, so guessing across accounts is slow too.
SIGN_IN_LIMIT = parse_limit("20/minute")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign a staff member in with email and password; repeated failures lock the account for a while."""
    form = StaffLoginForm()
    if request.method == "POST" and not _sign_in_allowed():
        flash("Too many sign-in attempts from this network. Wait a minute and try again.", "error")
        return render_template("admin/login.html", form=form), 429
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.execute(db.select(StaffUser).where(StaffUser.email == email)).scalar_one_or_none()
        if user is not None and user.locked_until and user.locked_until > utcnow():
            minutes = max(1, int((user.locked_until - utcnow()).total_seconds() // 60) + 1)
            flash(f"Too many wrong passwords. This account is locked; try again in {minutes} minutes.", "error")
            return render_template("admin/login.html", form=form), 429
        if user is not None and user.check_password(form.password.data):
            user.failed_logins, user.locked_until = 0, None
            db.session.commit()
            login_user(user, remember=form.remember.data)
            log.info("Staff user %s signed in.", user.id)
            return redirect(safe_next(request.args.get("next")) or url_for("admin.clients"))
        if user is not None:
            _count_failure(user)
        flash("That email and password do not match an account. Check both and try again.", "error")
    return render_template("admin/login.html", form=form)


def _sign_in_allowed():
    """Count a sign-in attempt against its address's limit; allow it when Redis is unreachable."""
    try:
        return current_limiter().hit(SIGN_IN_LIMIT, "staff-sign-in", request.remote_addr or "unknown")
    except redis.exceptions.RedisError as exc:
        log.warning("Staff sign-in rate limit not checked: Redis is unreachable (%s).", type(exc).__name__)
        return True


def _count_failure(user):
    user.failed_logins += 1
    if user.failed_logins >= LOCKOUT_AFTER:
        user.locked_until = utcnow() + LOCKOUT_FOR
        user.failed_logins = 0
        log.warning("Staff user %s locked out after %s wrong passwords.", user.id, LOCKOUT_AFTER)
    db.session.commit()


@bp.post("/logout")
@staff_required
def logout():
    """Sign the staff member out."""
    if ConfirmForm().validate_on_submit():
        logout_user()
    return redirect(url_for("admin.login"))


@bp.get("/")
@staff_required
def clients():
    """List the clinic's clients, optionally filtered by name or number."""
    query = request.args.get("q", "").strip()
    statement = _scoped(db.select(Client)).order_by(Client.name, Client.id).limit(200)
    if query:
        pattern = f"%{query}%"
        statement = statement.where(Client.name.ilike(pattern) | Client.mobile_number.like(pattern))
    rows = db.session.execute(statement).scalars().all()
    return render_template("admin/clients.html", clients=rows, query=query, form=NewConversationForm())


@bp.post("/messages")
@staff_required
def new_conversation():
    """Text a number, creating the client if the clinic has none with it."""
    form = NewConversationForm()
    if current_user.clinic is None:
        abort(403)
    if not form.validate_on_submit():
        flash("Enter a mobile number and a message, then send again.", "error")
        return redirect(url_for("admin.clients"))
    try:
        client, created = find_or_create_client(current_user.clinic, form.to.data)
        send_message(client, form.body.data, source="admin", author=current_user)
    except InvalidMessage as exc:
        db.session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.clients"))
    if created:
        check_new_number(client)
    return redirect(url_for("admin.conversation", client_id=client.id))


@bp.get("/clients/<int:client_id>")
@staff_required
def conversation(client_id):
    """Show the conversation with one client, each message with its delivery status."""
    client = get_client_or_404(client_id)
    messages = db.session.execute(
        db.select(Message).where(Message.client_id == client.id).order_by(Message.created_at, Message.id)
    ).scalars().all()
    return render_template(
        "admin/conversation.html",
        client=client,
        messages=messages,
        form=SendTextForm(),
        staff_message=staff_message,
        texting=texting_state(client),
        timeline=timeline,
    )


@bp.get("/attachments/<int:attachment_id>")
@staff_required
def attachment(attachment_id):
    """Serve a stored attachment of a message in the staff member's clinic."""
    found = _clinic_attachment_or_404(attachment_id)
    return send_file(media.path_for(found.storage_key), mimetype=found.content_type, max_age=0)


@bp.get("/attachments/<int:attachment_id>/preview")
@staff_required
def attachment_preview(attachment_id):
    """Serve a photo of a message in the staff member's clinic at screen size, or the file itself."""
    found = _clinic_attachment_or_404(attachment_id)
    path, content_type = media.preview_file(found.storage_key, found.content_type)
    return send_file(path, mimetype=content_type, max_age=0)


def _clinic_attachment_or_404(attachment_id):
    """Return a stored attachment of a client in the staff member's clinic, else abort with 404."""
    found = db.session.get(Attachment, attachment_id)
    if found is None or not found.storage_key:
        abort(404)
    get_client_or_404(found.message.client_id)
    if not media.file_present(found):
        abort(404)
    return found


@bp.post("/clients/<int:client_id>/messages")
@staff_required
def send(client_id):
    """Send a text, with optional photos or videos, to one client."""
    client = get_client_or_404(client_id)
    form = SendTextForm()
    if not form.validate_on_submit():
        flash("Write a message of at most 1600 characters, then send again.", "error")
        return redirect(url_for("admin.conversation", client_id=client.id))
    try:
        uploads = outbound_media.check_uploads(client.clinic.provider, _uploaded_files())
        send_message(client, form.body.data or "", source="admin", author=current_user, uploads=uploads)
        flash("Message queued to send.", "success")
    except (InvalidMessage, outbound_media.UploadRejected) as exc:
        db.session.rollback()
        flash(str(exc), "error")
    return redirect(url_for("admin.conversation", client_id=client.id))


def _uploaded_files():
    files = [f for f in request.files.getlist("attachments") if f and f.filename]
    return [(f.filename, f.read()) for f in files]


def texting_state(client):
    """Return what staff need to know about texting this client: consent and line type."""
    clinic = client.clinic
    consent = db.session.execute(
        db.select(Consent).where(
            Consent.sender_number == clinic.sender_number, Consent.client_number == client.mobile_number
        )
    ).scalar_one_or_none()
    line = db.session.execute(db.select(PhoneLine).where(PhoneLine.number == client.mobile_number)).scalar_one_or_none()
    return {"consent": consent, "line_type": line.line_type if line else "unknown", "line": line}


def _scoped(statement):
    # Operators see every clinic; staff only their own.
    if current_user.is_operator:
        return statement
    return statement.where(Client.clinic_id == current_user.clinic_id)


def get_client_or_404(client_id):
    """Return the client if the signed-in staff member may see it, else 404."""
    client = db.session.get(Client, client_id)
    if client is None or (not current_user.is_operator and client.clinic_id != current_user.clinic_id):
        abort(404)
    return client


# Imported last: the dashboard module adds its routes to ``bp`` above.
from portal import dashboard  # noqa: E402,F401  (registers the dashboard routes on this blueprint)
from portal import admin_tokens  # noqa: E402,F401  (registers the API-token routes on this blueprint)

"""Pet Portal for pet parents: link sign-in, one thread per clinic, messages, replies and attachments."""

import logging

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import update
from sqlalchemy.orm import joinedload
from werkzeug.exceptions import RequestEntityTooLarge

from notifier import media
from notifier.sending import MAX_BODY_CHARS, has_visible_text
from portal import MAX_ID, inputs, threads
from portal.auth import client_required, sign_out_everywhere
from portal.extensions import csrf, db
from portal.forms import ConfirmForm, ConfirmLinkForm, ReplyForm
from portal.models import Attachment, Client, Message, PortalToken, utcnow
from portal.reads import read_only

log = logging.getLogger(__name__)
bp = Blueprint("portal", __name__)

# Types every browser shows inline, so staff can see what was sent; Safari on iPhone converts
# HEIC photos to JPEG when a file input accepts image/*.
PHOTO_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WebP"}
PHOTO_TYPE_NAMES = "JPEG, PNG, GIF or WebP"
PHOTO_MAX_BYTES = media.MAX_MEDIA_BYTES
REPLY_TOO_LONG = f"Your message is too long. Shorten it to at most {MAX_BODY_CHARS} characters."
THREAD_PAGE_SIZE = 50


@bp.after_request
def private_pages(response):
    # Links carry sign-in tokens, so pages must not leak them to other sites or caches. The
    # referrer still goes to Pawpost itself: over HTTPS, Flask-WTF rejects a form POST without one.
    # The app-wide Content-Security-Policy and nosniff headers come from portal.security.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Robots-Tag"] = "noindex"
    if request.endpoint not in ("portal.attachment", "portal.attachment_preview"):
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
def home():
    """Send a signed-in pet parent to their inbox; explain both ways to sign in to everyone else."""
    if isinstance(current_user._get_current_object(), Client):
        return redirect(url_for("portal.inbox"))
    return render_template("portal/home.html")


@bp.get("/p/<token>")
def confirm_link(token):
    """Show a one-button page for a pointer or email link; a GET spends nothing and creates no session."""
    row, problem = _usable_token(token)
    if problem:
        return _link_problem(row, problem)
    return render_template("portal/confirm_link.html", clinic=row.client.clinic, form=ConfirmLinkForm())


@bp.post("/p/<token>")
def open_link(token):
    """Spend the link's token, sign the pet parent in and open the linked message."""
    form = ConfirmLinkForm()
    row, problem = _usable_token(token)
    if problem is None and not form.validate_on_submit():
        abort(400)
    if problem is None and not _spend(row):
        problem = "used"
    if problem:
        return _link_problem(row, problem)

    login_user(row.client, remember=form.remember.data)
    log.info("Client %s signed in with a %s link.", row.client_id, row.purpose)
    if row.message_id is None:
        return redirect(url_for("portal.inbox"))
    # Pressing the button was the request to read this message, so it counts as read.
    threads.mark_read([row.message_id])
    db.session.commit()
    return redirect(url_for("portal.message", message_id=row.message_id))


@bp.get("/inbox")
@read_only
@client_required
def inbox():
    """List one thread per clinic, newest activity first, with unread counts."""
    summaries = threads.thread_summaries(current_user)
    return render_template("portal/inbox.html", threads=summaries)


@bp.get("/inbox/threads/<int:client_id>")
@read_only
@client_required
def thread(client_id):
    """Show one clinic's thread, oldest of the latest page first, with the reply form at the end."""
    record = get_thread_or_404(client_id)
    return _render_thread(record)


@bp.post("/inbox/threads/<int:client_id>/messages")
@csrf.exempt
@client_required
def reply(client_id):
    """Store the pet parent's reply, with at most one photo, as an inbound message in the thread."""
    record = get_thread_or_404(client_id)
    # The form is read up to the app's request limit (at least a full-size photo and its form, as
    # config.py checks), so a photo over the photo limit gets its error beside the typed text.
    try:
        csrf.protect()
    except RequestEntityTooLarge:
        limit = request.max_content_length
        if limit is not None and (request.content_length is None or request.content_length > limit):
            return _render_thread(record, error=photo_too_large_text(), status=413)
        # Within the request limit, so a text field passed the form's own limit on field sizes.
        return _render_thread(record, error=REPLY_TOO_LONG, status=413)
    unstorable_field = inputs.submitted_unstorable_field()
    if unstorable_field is not None:
        return _render_thread(record, error=inputs.unstorable_message(unstorable_field), status=400)

    if len([upload for upload in request.files.getlist("photo") if upload.filename]) > 1:
        return _render_thread(record, request.form.get("body"), "Attach one photo at most, then press Send.", 400)

    form = ReplyForm()
    body = (form.body.data or "").strip()
    if not has_visible_text(body):
        # Only spaces and invisible characters, such as a zero-width space: nothing a clinic could read.
        body = ""
    upload = form.photo.data if form.photo.data and form.photo.data.filename else None
    if not form.validate():
        return _render_thread(record, form.body.data, REPLY_TOO_LONG, 400)
    if not body and upload is None:
        return _render_thread(record, form.body.data, "Write a message or add a photo, then press Send.", 400)

    data = upload.read(PHOTO_MAX_BYTES + 1) if upload is not None else b""
    problem = check_photo(data) if upload is not None else None
    if problem:
        return _render_thread(record, form.body.data, problem, 400)

    message = _store_reply(record, body, data)
    flash(f"Your message was sent to {record.clinic.name}.", "success")
    return redirect(url_for("portal.thread", client_id=record.id, _anchor=f"message-{message.id}"))


def check_photo(data):
    """Return why ``data`` cannot be a reply photo, or None when it can."""
    if not data:
        return "The photo file is empty. Choose the photo again."
    if len(data) > PHOTO_MAX_BYTES:
        return photo_too_large_text()
    content_type = media.sniff_type(data)
    if content_type not in PHOTO_TYPES:
        return f"The file you attached is not a photo Pawpost can show. Attach a {PHOTO_TYPE_NAMES} photo."
    return None


def photo_too_large_text():
    megabytes = PHOTO_MAX_BYTES // (1024 * 1024)
    return f"The photo is larger than {megabytes} MB, the most a reply can carry. Choose a smaller photo."


def _store_reply(record, body, photo):
    message = Message(
        clinic_id=record.clinic_id, client_id=record.id, direction="inbound", source="portal", body=body
    )
    db.session.add(message)
    db.session.flush()
    if photo:
        key, content_type = media.store(record.clinic_id, message.id, 0, photo)
        message.attachments.append(
            Attachment(
                position=0, content_type=content_type, size_bytes=len(photo), storage_key=key, fetched_at=utcnow()
            )
        )
    db.session.commit()
    log.info("Client %s replied through the Pet Portal: message %s, %s photo(s).", record.id, message.id, len(message.attachments))
    return message


@bp.get("/inbox/messages/<int:message_id>")
@read_only
@client_required
def message(message_id):
    """Show one message to its owner; reading it here does not mark it read."""
    found = get_message_or_404(message_id)
    return render_template("portal/message.html", message=found, portal=found.delivery("portal"), form=ConfirmForm())


@bp.post("/inbox/messages/<int:message_id>/read")
@client_required
def mark_message_read(message_id):
    """Mark one message as read, which staff see on the message."""
    found = get_message_or_404(message_id)
    threads.mark_read([found.id])
    db.session.commit()
    return redirect(url_for("portal.message", message_id=found.id))


@bp.post("/inbox/threads/<int:client_id>/read")
@client_required
def mark_thread_read(client_id):
    """Mark every message of one clinic's thread as read."""
    record = get_thread_or_404(client_id)
    threads.mark_read(db.select(Message.id).where(Message.client_id == record.id))
    db.session.commit()
    return redirect(url_for("portal.thread", client_id=record.id))


@bp.post("/inbox/read")
@client_required
def mark_all_read():
    """Mark every message of every thread as read."""
    threads.mark_read(db.select(Message.id).where(Message.client_id.in_(threads.person_client_ids(current_user))))
    db.session.commit()
    return redirect(url_for("portal.inbox"))


@bp.get("/inbox/attachments/<int:attachment_id>")
@client_required
def attachment(attachment_id):
    """Serve a photo or video of the signed-in pet parent's own threads."""
    found = _own_attachment_or_404(attachment_id)
    return _private_file(media.path_for(found.storage_key), found.content_type)


@bp.get("/inbox/attachments/<int:attachment_id>/preview")
@client_required
def attachment_preview(attachment_id):
    """Serve a photo of the signed-in pet parent's own threads at screen size, or the file itself."""
    found = _own_attachment_or_404(attachment_id)
    return _private_file(*media.preview_file(found.storage_key, found.content_type))


def _own_attachment_or_404(attachment_id):
    """Return a stored attachment of the signed-in pet parent's own threads, else 404."""
    found = db.session.get(Attachment, attachment_id)
    if found is None or not found.storage_key:
        abort(404)
    get_message_or_404(found.message_id)
    if not media.file_present(found):
        abort(404)
    return found


def _private_file(path, content_type):
    response = send_file(path, mimetype=content_type, conditional=True)
    # The browser may keep the file but must ask again, so a signed-out browser gets no copy.
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.post("/logout")
def logout():
    """Sign the pet parent out on every device, ending every session and "stay signed in" cookie."""
    user = current_user._get_current_object()
    if isinstance(user, Client):
        sign_out_everywhere(user)
        db.session.commit()
        log.info("Client %s signed out everywhere.", user.id)
    logout_user()
    flash("You are signed out on every device.", "success")
    return redirect(url_for("portal.home"))


def get_thread_or_404(client_id):
    """Return the client record of a thread, with its clinic, if it belongs to the signed-in pet parent, else 404."""
    record = db.session.get(Client, client_id, options=[joinedload(Client.clinic)])
    if record is None or record.mobile_number != current_user.mobile_number:
        abort(404)
    return record


def get_message_or_404(message_id):
    """Return the message if one of the signed-in pet parent's threads shows it, else 404."""
    found = db.session.execute(
        threads.visible_messages().where(
            Message.id == message_id, Message.client_id.in_(threads.person_client_ids(current_user))
        )
    ).scalar_one_or_none()
    if found is None:
        abort(404)
    return found


def _render_thread(record, body=None, error=None, status=200):
    # The reply form is written out in the template rather than rendered by WTForms, which cost
    # about 15 % of the page's CPU time. ReplyForm still checks what is posted.
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before <= MAX_ID:
        abort(400, f"before={before} is not a message id. Use the thread's \"Show older messages\" link.")
    messages, has_older = threads.thread_messages(record, before=before, limit=THREAD_PAGE_SIZE)
    # A page holding the whole thread already shows whether anything in it is unread.
    unread = any(m.unread for m in messages)
    if not unread and (has_older or before is not None):
        unread = record.id in threads.unread_counts([record.id])
    page = render_template(
        "portal/thread.html",
        record=record,
        messages=messages,
        has_older=has_older,
        unread=unread,
        has_chat=any(m.chat_notification for m in messages),
        body=body or "",
        error=error,
        photo_max_mb=PHOTO_MAX_BYTES // (1024 * 1024),
        photo_types=PHOTO_TYPE_NAMES,
    )
    return page, status


def _link_problem(row, problem):
    # A used or expired link still names its message, so signing in by code can lead back to it.
    next_path = url_for("portal.message", message_id=row.message_id) if row and row.message_id else None
    status = 404 if problem == "unknown" else 410
    return render_template("portal/link_problem.html", problem=problem, next_path=next_path), status


def _usable_token(raw):
    if len(raw) > 100:
        return None, "unknown"
    row = db.session.execute(
        db.select(PortalToken).where(PortalToken.token_hash == PortalToken.hash(raw))
    ).scalar_one_or_none()
    if row is None:
        return None, "unknown"
    if row.used_at is not None:
        return row, "used"
    if row.expires_at <= utcnow():
        return row, "expired"
    return row, None


def _spend(row):
    # Conditional, so two taps at once sign in only once.
    spent = db.session.execute(
        update(PortalToken)
        .where(PortalToken.id == row.id, PortalToken.used_at.is_(None), PortalToken.expires_at > utcnow())
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    db.session.commit()
    return spent


# Routes in their own modules, registered on ``bp`` when imported.
from portal import petportal_format, petportal_preferences, petportal_signin  # noqa: E402, F401
from portal import petportal_push  # noqa: E402, F401  (Web Push routes and the `flask push` commands)

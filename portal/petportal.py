"""Pet Portal for pet parents: pointer-link sign-in and the inbox."""

import logging

from flask import Blueprint, abort, redirect, render_template, send_file, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import update

from notifier import media
from portal.auth import client_required
from portal.extensions import db
from portal.forms import ConfirmForm
from portal.models import Attachment, Client, Delivery, Message, PortalToken, utcnow

log = logging.getLogger(__name__)
bp = Blueprint("portal", __name__)


@bp.after_request
def private_pages(response):
    # Links carry sign-in tokens, so pages must not leak them to other sites or caches.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.get("/")
def home():
    """Send a signed-in pet parent to their inbox; explain sign-in to everyone else."""
    if isinstance(current_user._get_current_object(), Client):
        return redirect(url_for("portal.inbox"))
    return render_template("portal/home.html")


@bp.get("/p/<token>")
def confirm_link(token):
    """Show a one-button page for a pointer link; a GET spends nothing and signs nobody in."""
    row, problem = _usable_token(token)
    if problem:
        return render_template("portal/link_problem.html", problem=problem), 410 if problem != "unknown" else 404
    return render_template("portal/confirm_link.html", clinic=row.client.clinic, form=ConfirmForm())


@bp.post("/p/<token>")
def open_link(token):
    """Spend the link's token, sign the pet parent in and open the linked message."""
    row, problem = _usable_token(token)
    if problem is None and not ConfirmForm().validate_on_submit():
        abort(400)
    if problem is None and not _spend(row):
        problem = "used"
    if problem:
        return render_template("portal/link_problem.html", problem=problem), 410 if problem != "unknown" else 404

    login_user(row.client)
    log.info("Client %s signed in with a %s link.", row.client_id, row.purpose)
    if row.message_id is None:
        return redirect(url_for("portal.inbox"))
    _mark_read(row.message_id)
    db.session.commit()
    return redirect(url_for("portal.message", message_id=row.message_id))


@bp.get("/inbox")
@client_required
def inbox():
    """List the pet parent's conversation with their clinic, newest first, their own replies included."""
    rows = db.session.execute(
        db.select(Message, Delivery)
        .outerjoin(Delivery, (Delivery.message_id == Message.id) & (Delivery.channel == "portal"))
        .where(Message.client_id == current_user.id)
        .where((Message.direction == "inbound") | (Delivery.id.is_not(None)))
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(100)
    ).all()
    return render_template("portal/inbox.html", rows=rows, client=current_user, form=ConfirmForm())


@bp.get("/inbox/messages/<int:message_id>")
@client_required
def message(message_id):
    """Show one message to its owner."""
    found = get_message_or_404(message_id)
    return render_template("portal/message.html", message=found, form=ConfirmForm())


@bp.post("/inbox/read")
@client_required
def mark_all_read():
    """Mark every message in the inbox as read."""
    if ConfirmForm().validate_on_submit():
        ids = db.select(Message.id).where(Message.client_id == current_user.id)
        db.session.execute(
            update(Delivery)
            .where(Delivery.message_id.in_(ids), Delivery.channel == "portal", Delivery.read_at.is_(None))
            .values(read_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    return redirect(url_for("portal.inbox"))


@bp.post("/logout")
def logout():
    """Sign the pet parent out."""
    if ConfirmForm().validate_on_submit():
        logout_user()
    return redirect(url_for("portal.home"))


def get_message_or_404(message_id):
    """Return the message if it belongs to the signed-in pet parent, else 404."""
    found = db.session.get(Message, message_id)
    if found is None or found.client_id != current_user.id:
        abort(404)
    if found.direction != "inbound" and found.delivery("portal") is None:
        abort(404)
    return found


@bp.get("/inbox/attachments/<int:attachment_id>")
@client_required
def attachment(attachment_id):
    """Serve a photo or video of the signed-in pet parent's own conversation."""
    found = db.session.get(Attachment, attachment_id)
    if found is None or not found.storage_key:
        abort(404)
    get_message_or_404(found.message_id)
    return send_file(media.path_for(found.storage_key), mimetype=found.content_type, max_age=0)


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


def _mark_read(message_id):
    db.session.execute(
        update(Delivery)
        .where(Delivery.message_id == message_id, Delivery.channel == "portal", Delivery.read_at.is_(None))
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )

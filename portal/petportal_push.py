"""Web Push in the Pet Portal: the VAPID public key, a client's browser subscriptions and the
``flask push`` commands.

The routes join the portal blueprint, so they share its sign-in, CSRF protection and
private-page headers. Browsers send the CSRF token in the X-CSRFToken header.
"""

import logging

import click
from flask import current_app, jsonify, request
from flask.cli import AppGroup
from flask_login import current_user
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from notifier import push
from portal.auth import client_required
from portal.extensions import db
from portal.models import Client, PushSubscription
from portal.petportal import bp
from portal.threads import person_client_ids

log = logging.getLogger(__name__)
push_cli = AppGroup("push", help="Web Push setup.")


@bp.record_once
def _set_up_app(state):
    # Runs once per app, when create_app registers the portal blueprint.
    state.app.cli.add_command(push_cli)
    push.log_status(state.app)


@push_cli.command("generate-vapid-keys")
def generate_vapid_keys():
    """Print a new VAPID key pair for PAWPOST_VAPID_PUBLIC_KEY and PAWPOST_VAPID_PRIVATE_KEY."""
    public, private = push.generate_vapid_keys()
    click.echo(f"PAWPOST_VAPID_PUBLIC_KEY={public}")
    click.echo(f"PAWPOST_VAPID_PRIVATE_KEY={private}")
    click.echo("Keep the private key secret. Changing the pair later ends every browser's subscription.", err=True)


@bp.get("/push/key")
def push_key():
    """Return the VAPID public key that browsers subscribe with, or 404 when Web Push is off."""
    if not push.configured():
        return _error("Web Push is off on this server.", 404)
    return jsonify(public_key=current_app.config["PAWPOST_VAPID_PUBLIC_KEY"])


@bp.post("/push/subscriptions")
@client_required
def add_subscription():
    """Store this browser's push subscription for the signed-in client and turn push on for them."""
    if not push.configured():
        return _error("Web Push is off on this server.", 404)
    try:
        endpoint, p256dh, auth = push.parse_subscription(request.get_json(silent=True), current_app.config["PAWPOST_ENV"])
    except push.InvalidSubscription as exc:
        log.info("Client %s sent an invalid push subscription: %s", current_user.id, exc)
        return _error(str(exc), 400)

    try:
        row, created = _store(endpoint, p256dh, auth)
    except IntegrityError:
        # The same browser sent its subscription twice at once, and the other request stored it.
        db.session.rollback()
        row, created = _store(endpoint, p256dh, auth)
    except push.EndpointTaken as exc:
        db.session.rollback()
        log.warning("Client %s sent the endpoint of push subscription %s, which another person owns.", current_user.id, exc)
        return _error("This browser gets notifications for another Pet Portal account. Turn them off there first.", 409)

    log.info("Client %s %s push subscription %s.", current_user.id, "added" if created else "refreshed", row.id)
    return jsonify(id=row.id), 201 if created else 200


def _store(endpoint, p256dh, auth):
    row, created = push.save_subscription(current_user, endpoint, p256dh, auth, request.user_agent.string)
    # Like the preferences form, this turns push on for the person's record at every clinic.
    db.session.execute(
        update(Client)
        .where(Client.id.in_(person_client_ids(current_user)))
        .values(push_enabled=True)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return row, created


@bp.post("/push/subscriptions/delete")
@client_required
def delete_subscription():
    """Delete one of the signed-in client's push subscriptions, named by its endpoint."""
    data = request.get_json(silent=True)
    endpoint = data.get("endpoint") if isinstance(data, dict) else None
    if not isinstance(endpoint, str) or not endpoint:
        return _error('endpoint is missing. Send {"endpoint": "<the subscription endpoint>"}.', 400)

    row = db.session.execute(db.select(PushSubscription).where(PushSubscription.endpoint == endpoint)).scalar_one_or_none()
    # Another person's subscription gets the same response as none, so endpoints cannot be probed.
    if row is None or not push.owns(current_user, row):
        log.info("Client %s requested deleting a push subscription that is missing or not theirs.", current_user.id)
        return _error("You have no push subscription with this endpoint.", 404)

    subscription_id = row.id
    db.session.delete(row)
    db.session.commit()
    log.info("Client %s deleted push subscription %s.", current_user.id, subscription_id)
    return jsonify(deleted=True)


def _error(text, status):
    # The same shape as the API's errors, so push.js reads both alike.
    return jsonify(error={"code": status, "message": text}), status

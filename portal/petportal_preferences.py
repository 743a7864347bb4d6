"""Pet Portal preferences: email and push notifications, and whether each clinic can text the pet parent."""

import logging
from functools import cache
from pathlib import Path

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from notifier import policy
from portal import threads
from portal.auth import client_required
from portal.extensions import db
from portal.forms import PreferencesForm
from portal.petportal import bp

log = logging.getLogger(__name__)


@bp.route("/preferences", methods=["GET", "POST"])
@client_required
def preferences():
    """Show and save the pet parent's email and push choices, and each clinic's texting state."""
    records = threads.person_clients(current_user)
    emailable = [record for record in records if record.email and record.email_verified_at]
    form = PreferencesForm()
    form.email_clients.choices = [(record.id, record.clinic.name) for record in emailable]

    if form.validate_on_submit():
        chosen = set(form.email_clients.data or [])
        for record in emailable:
            record.email_enabled = record.id in chosen
        for record in records:
            record.push_enabled = form.push.data
        db.session.commit()
        log.info("Client %s saved preferences: %s email thread(s), push %s.", current_user.id, len(chosen), form.push.data)
        flash("Your preferences are saved.", "success")
        return redirect(url_for("portal.preferences"))

    if request.method == "GET":
        form.email_clients.data = [record.id for record in emailable if record.email_enabled]
        form.push.data = any(record.push_enabled for record in records)
    texting = [(record, policy.suppression_reason(record.clinic, record.mobile_number)) for record in records]
    return render_template(
        "portal/preferences.html",
        form=form,
        emailable=emailable,
        texting=texting,
        push_script=_push_script_exists(current_app.static_folder),
    )


@cache
def _push_script_exists(static_folder):
    # The push script ships separately; until it does, the page offers push without the button's script.
    return (Path(static_folder) / "push.js").is_file()

"""Staff admin: clinic admins create, list and revoke their clinic's API tokens."""

import logging
from functools import wraps

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from portal.admin import bp
from portal.auth import staff_required
from portal.extensions import db
from portal.forms import ConfirmForm
from portal.models import ApiToken, utcnow

log = logging.getLogger(__name__)


class ApiTokenForm(FlaskForm):
    name = StringField(
        "Token name",
        validators=[
            DataRequired("Name the token after the system that will use it, such as the PIMS's name."),
            Length(max=80, message="Use a name of at most 80 characters."),
        ],
    )


def clinic_admin_required(view):
    """Let only staff who are admins of a clinic through; other staff get 403."""

    @wraps(view)
    @staff_required
    def wrapped(*args, **kwargs):
        if not current_user.is_clinic_admin or current_user.clinic_id is None:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


@bp.get("/api-tokens")
@clinic_admin_required
def api_tokens():
    """List the clinic's API tokens with when each was last used, and offer a form for a new one."""
    return _render_page(ApiTokenForm())


@bp.post("/api-tokens")
@clinic_admin_required
def create_api_token():
    """Create a token and show its value once; only its SHA-256 hash is stored."""
    form = ApiTokenForm()
    if not form.validate_on_submit():
        return _render_page(form), 400
    row, raw = ApiToken.issue(current_user.clinic, form.name.data.strip())
    db.session.add(row)
    db.session.commit()
    log.info("Staff user %s created API token %s for clinic %s.", current_user.id, row.id, row.clinic_id)
    response = _render_page(ApiTokenForm(formdata=None), new_token=raw, new_token_row=row)
    return response, 201, {"Cache-Control": "no-store"}


@bp.post("/api-tokens/<int:token_id>/revoke")
@clinic_admin_required
def revoke_api_token(token_id):
    """Revoke one of the clinic's tokens; requests with it get 401 from then on."""
    token = db.session.get(ApiToken, token_id)
    if token is None or token.clinic_id != current_user.clinic_id:
        abort(404)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.commit()
        log.info("Staff user %s revoked API token %s of clinic %s.", current_user.id, token.id, token.clinic_id)
    flash(f"The token {token.name!r} is revoked. Systems still using it now get 401 errors.", "success")
    return redirect(url_for("admin.api_tokens"))


def _render_page(form, new_token=None, new_token_row=None):
    tokens = db.session.execute(
        db.select(ApiToken).where(ApiToken.clinic_id == current_user.clinic_id).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    ).scalars().all()
    return render_template(
        "admin/api_tokens.html",
        form=form,
        tokens=tokens,
        revoke_form=ConfirmForm(),
        new_token=new_token,
        new_token_row=new_token_row,
    )

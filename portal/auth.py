"""Session sign-in for both audiences: staff and pet parents share one Flask-Login manager.

A session id is ``staff:<id>`` or ``client:<id>``, so one cookie can never be read as the
other kind of account.
"""

from functools import wraps

from flask import abort, redirect, request, url_for
from flask_login import current_user

from portal.extensions import db, login_manager
from portal.models import Client, StaffUser


def init_app(app):
    login_manager.login_view = "admin.login"
    login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(user_id):
    kind, _, rest = (user_id or "").partition(":")
    raw_id, _, version = rest.partition(":")
    if not raw_id.isdigit():
        return None
    if kind == "staff":
        return db.session.get(StaffUser, int(raw_id))
    if kind != "client":
        return None
    client = db.session.get(Client, int(raw_id))
    # A session from before the client's last logout names an older version and is refused.
    if client is None or version != str(client.session_version):
        return None
    return client


def staff_required(view):
    """Let only a signed-in staff member through; others go to the staff sign-in page."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not isinstance(current_user._get_current_object(), StaffUser):
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


def client_required(view):
    """Let only a signed-in pet parent through; others get the portal's sign-in help page."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not isinstance(current_user._get_current_object(), Client):
            abort(401)
        return view(*args, **kwargs)

    return wrapped


def safe_next(target):
    """Return ``target`` if it is a path on this site, else None."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    # Browsers drop tabs and newlines from a URL, so "/\t/evil.example" would lead off-site.
    if not target.isprintable():
        return None
    return target

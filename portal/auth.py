"""Session sign-in for both audiences: staff and pet parents share one Flask-Login manager.

A session id is ``staff:<id>`` or ``client:<id>``, so one cookie can never be read as the
other kind of account.
"""

from functools import cache, wraps
from urllib.parse import unquote, urlsplit

from flask import redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import bindparam, update
from sqlalchemy.orm import joinedload

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
    client = db.session.execute(_client_with_clinic(), {"client_id": int(raw_id)}).scalar_one_or_none()
    # A session from before the client's last logout names an older version and is refused.
    if client is None or version != str(client.session_version):
        return None
    return client


@cache
def _client_with_clinic():
    # Every portal page names the record's clinic, so it comes in the same statement. The statement
    # is built once because every signed-in portal request runs it.
    return db.select(Client).options(joinedload(Client.clinic)).where(Client.id == bindparam("client_id"))


def staff_required(view):
    """Let only a signed-in staff member through; others go to the staff sign-in page."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not isinstance(current_user._get_current_object(), StaffUser):
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


def client_required(view):
    """Let only a signed-in pet parent through; others get a 401 page that offers both ways to sign in."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not isinstance(current_user._get_current_object(), Client):
            next_path = request.path if request.method == "GET" else None
            return render_template("portal/sign_in_required.html", next_path=next_path), 401
        return view(*args, **kwargs)

    return wrapped


def sign_out_everywhere(client):
    """Raise the session version of every client record sharing ``client``'s mobile number.

    A pet parent reads every clinic's thread through any of their records, so ending the sessions
    of only one record would leave sessions opened through the others signed in.
    """
    db.session.execute(
        update(Client)
        .where(Client.mobile_number == client.mobile_number)
        .values(session_version=Client.session_version + 1)
        .execution_options(synchronize_session=False)
    )


# Percent-decoding stops after this many rounds, and a value still changing then is rejected.
MAX_DECODE_ROUNDS = 4


def safe_next(target):
    """Return ``target`` if it is a path on this site, else None.

    The checks run on the value as given and on each percent-decoded form of it, so an encoded
    ``//`` (``%2F%2F``) or backslash (``%5C``) is rejected like the plain one.
    """
    if not target or len(target) > 2000:
        return None
    value = target
    for _ in range(MAX_DECODE_ROUNDS):
        if not _is_local_path(value):
            return None
        decoded = unquote(value)
        if decoded == value:
            return target
        value = decoded
    return None


def _is_local_path(value):
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return False
    # Browsers drop tabs and newlines from a URL, so "/\t/evil.example" would lead off-site.
    if not value.isprintable():
        return False
    parts = urlsplit(value)
    return not parts.scheme and not parts.netloc

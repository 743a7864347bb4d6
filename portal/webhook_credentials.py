"""Clinic credentials for authenticating provider callbacks, cached per process.

Every callback is checked against its clinic's Twilio auth token or Bandwidth basic-auth pair.
Reading them from the database once a minute per process, instead of once per callback,
saves a query on each of the many callbacks a busy clinic receives.

A check that fails against cached credentials reads the clinic again, so a new credential
is accepted at once. A credential that was replaced keeps being accepted by a process that
cached it until its entry expires, ``PAWPOST_CALLBACK_CREDENTIALS_SECONDS`` (60 by default).
A change made through the ORM in this process drops the clinic's entry at once.
"""

import time
from dataclasses import dataclass

from flask import current_app, has_app_context
from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Clinic

_clinics = Clinic.__table__


@dataclass(frozen=True)
class CallbackCredentials:
    """The clinic fields a callback check reads: the provider and the secrets callbacks are signed with."""

    clinic_id: int
    provider: str
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    webhook_username: str | None
    webhook_password: str | None


_LOOKUP = select(
    _clinics.c.id,
    _clinics.c.provider,
    _clinics.c.twilio_account_sid,
    _clinics.c.twilio_auth_token,
    _clinics.c.webhook_username,
    _clinics.c.webhook_password,
).where(_clinics.c.id == bindparam("clinic_id"))


def authenticate(clinic_id, rejection):
    """Return ``(credentials, None)`` for a request the clinic's credentials accept, else ``(None, reason)``.

    ``rejection(credentials)`` returns None when the request passes, or why it does not. It is
    tried on the cached credentials first and, when they are missing or reject the request,
    on credentials read from the database.
    """
    cached = _cached(clinic_id)
    reason = rejection(cached) if cached is not None else None
    if cached is not None and reason is None:
        return cached, None
    current = _load(clinic_id)
    if current is None:
        return None, "unknown clinic"
    if current != cached:
        reason = rejection(current)
    if reason is None:
        return current, None
    return None, reason


def clear():
    """Forget every cached clinic of the current app, so the next callback of each reads it again."""
    _cache().clear()


def _cached(clinic_id):
    entry = _cache().get(clinic_id)
    if entry is None or entry[0] <= time.monotonic():
        return None
    return entry[1]


def _load(clinic_id):
    row = db.session.connection().execute(_LOOKUP, {"clinic_id": clinic_id}).first()
    if row is None:
        # Unknown ids are not cached, so forged URLs cannot grow the cache.
        _cache().pop(clinic_id, None)
        return None
    credentials = CallbackCredentials(*row)
    expires_at = time.monotonic() + current_app.config["PAWPOST_CALLBACK_CREDENTIALS_SECONDS"]
    _cache()[clinic_id] = (expires_at, credentials)
    return credentials


def _cache():
    # One cache per app, so two apps in one process (tests) never share clinics.
    return current_app.extensions.setdefault("pawpost_callback_credentials", {})


@event.listens_for(Clinic, "after_update")
@event.listens_for(Clinic, "after_delete")
def _forget_changed_clinic(mapper, connection, clinic):
    if has_app_context():
        _cache().pop(clinic.id, None)


@event.listens_for(Session, "after_flush")
def _note_changed_clinics(session, _flush_context):
    # The lists still hold the flushed objects here. A callback served between this flush and
    # the commit reads the old row again, so the entry is dropped once more after the commit.
    changed = {row.id for row in (*session.dirty, *session.deleted) if isinstance(row, Clinic)}
    if changed:
        session.info.setdefault("pawpost_changed_clinics", set()).update(changed)


@event.listens_for(Session, "after_commit")
def _forget_committed_clinics(session):
    changed = session.info.pop("pawpost_changed_clinics", None)
    if changed and has_app_context():
        for clinic_id in changed:
            _cache().pop(clinic_id, None)

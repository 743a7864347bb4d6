"""Idle PostgreSQL connections are checked before use, and a dead one is replaced unseen."""

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from portal import pool
from portal.extensions import db


@pytest.fixture
def postgresql(app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the connection check runs on PostgreSQL only")
    db.engine.dispose()
    yield
    db.engine.dispose()


def backend_pid():
    pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
    db.session.commit()
    return pid


def terminate(pid):
    """End the backend ``pid`` from a connection outside the app's pool, as a database restart would."""
    outside = create_engine(db.engine.url, poolclass=NullPool)
    with outside.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    outside.dispose()


def test_idle_dead_connection_replaced(postgresql, monkeypatch):
    first = backend_pid()
    terminate(first)
    monkeypatch.setattr(pool, "PING_AFTER_SECONDS", 0.0)

    second = backend_pid()

    assert second != first


def test_recent_dead_connection_fails_once(postgresql):
    first = backend_pid()
    terminate(first)

    with pytest.raises(OperationalError):
        backend_pid()
    db.session.rollback()
    second = backend_pid()

    assert second != first

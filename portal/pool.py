"""Liveness checks of pooled PostgreSQL connections that have sat idle.

A connection that has been in the pool for a while may have been closed by a database restart
or a network device. Checking it costs a round trip, though, and a connection handed back a
moment ago is almost always alive. Connections returned less than ``PING_AFTER_SECONDS`` ago are
used without the check. If one of them died all the same, its request fails; SQLAlchemy then
discards every connection opened before the failure, so the next requests reconnect.
"""

import time

from sqlalchemy import event, exc

PING_AFTER_SECONDS = 1.0


def watch(engine):
    """Check ``engine``'s idle connections on checkout, replacing dead ones before they are used."""
    dialect = engine.dialect

    def check_if_idle(dbapi_connection, connection_record, _connection_proxy):
        fresh_at = connection_record.info.get("fresh_at")
        if fresh_at is not None and time.monotonic() - fresh_at < PING_AFTER_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out another.
            raise exc.DisconnectionError(f"pooled connection is closed: {type(error).__name__}") from error

    event.listen(engine, "connect", _note_fresh)
    event.listen(engine, "checkin", _note_fresh)
    event.listen(engine, "checkout", check_if_idle)


def _note_fresh(_dbapi_connection, connection_record):
    connection_record.info["fresh_at"] = time.monotonic()


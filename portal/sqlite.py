"""Settings for SQLite, the embedded default database.

WAL mode lets the web server read while a worker writes, so the demo's processes wait on
each other less. Transaction handling stays Python's default: sqlite3 begins a transaction
only before a write, which keeps readers from holding locks across requests.
"""

import sys

from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "connect")
def _on_connect(dbapi_connection, _record):
    # SQLAlchemy imports sqlite3 before it opens a SQLite connection, so a process on PostgreSQL
    # need not load the module (about 0.8 MB) only for this check.
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

"""Settings for SQLite, the embedded default database.

WAL mode lets the web server read while a worker writes, so the demo's processes wait on
each other less. Transaction handling stays Python's default: sqlite3 begins a transaction
only before a write, which keeps readers from holding locks across requests.
"""

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "connect")
def _on_connect(dbapi_connection, _record):
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

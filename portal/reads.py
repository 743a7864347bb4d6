"""Views that only read: their statements run without a transaction.

A read-only page gains nothing from BEGIN and ROLLBACK but two round trips. Worse, psycopg
drops its prepared statements at every ROLLBACK, so PostgreSQL parses and plans the statements
of a page whose transaction always ends in one on every request. In autocommit each
statement reads the latest committed rows, as READ COMMITTED would, and the connection keeps
its prepared statements from one request to the next.
"""

from functools import wraps

from portal.extensions import db


def read_only(view):
    """Run ``view``'s statements, the user loader's included, in autocommit.

    Put it above the sign-in check, which loads the user. A view that writes must not use it: in
    autocommit each of its statements would commit on its own.
    """

    @wraps(view)
    def wrapped(*args, **kwargs):
        # A session already in a transaction (a test that shares its session with the request)
        # keeps it, because the isolation level of a connection in use cannot change.
        if db.session().in_transaction():
            return view(*args, **kwargs)
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        try:
            return view(*args, **kwargs)
        finally:
            # Hand the connection back now rather than at teardown. A session that outlives the
            # request (the test client shares the test's) would otherwise write in autocommit next.
            db.session.rollback()

    return wrapped

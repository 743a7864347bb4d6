"""The memory floor of Pawpost's fixed stack: the libraries imported and connected, and no Pawpost code.

Run as ``python -m bench.stack_floor web|worker DATABASE_URL REDIS_URL``. It makes a Flask app
with Flask-SQLAlchemy, Flask-Login and Flask-WTF, runs one statement on PostgreSQL and one command
on Redis, imports what the process kind needs besides, and prints its peak RSS in KiB. The web
process checks Twilio's signatures and enqueues RQ jobs. A worker also makes both providers' SDK
clients.
"""

import os
import sys

import flask
import flask_login
import flask_sqlalchemy
import flask_wtf
import redis
import rq
from sqlalchemy import text
from twilio.request_validator import RequestValidator


def build(kind, database_url, redis_url):
    """Import and connect what a ``kind`` process of the fixed stack loads; return the objects it made."""
    app = flask.Flask("stack_floor")
    app.config.update(SQLALCHEMY_DATABASE_URI=database_url, SECRET_KEY="stack-floor")
    db = flask_sqlalchemy.SQLAlchemy(app)
    flask_login.LoginManager(app)
    flask_wtf.CSRFProtect(app)
    with app.app_context():
        db.session.execute(text("SELECT 1")).scalar_one()
    connection = redis.Redis.from_url(redis_url)
    connection.ping()
    objects = [app, db, rq.Queue("stack-floor", connection=connection), RequestValidator("token")]
    if kind == "worker":
        import bandwidth
        from twilio.rest import Client

        objects.append(Client("AC" + "0" * 32, "token"))
        objects.append(bandwidth.ApiClient(bandwidth.Configuration(username="user", password="password")))
    return objects


def main(argv):
    kind, database_url, redis_url = argv
    if kind not in ("web", "worker"):
        raise SystemExit(f"Invalid process kind {kind!r}: use web or worker.")
    _objects = build(kind, database_url, redis_url)
    # Read here rather than through bench.environment, whose imports would raise the floor.
    with open(f"/proc/{os.getpid()}/status") as status:
        print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))


if __name__ == "__main__":
    main(sys.argv[1:])

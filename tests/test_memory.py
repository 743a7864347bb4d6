"""Heavy libraries load only where they are used, not in every web and worker process.

Each case starts a fresh interpreter, because the test process itself has imported most of them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

import portal.sqlite  # noqa: F401  (the hook under test)
from portal.extensions import db

ROOT = Path(__file__).resolve().parent.parent

# Imports wsgi (which builds the app), serves two requests and prints the statuses and modules.
SERVE_REQUESTS = """
import json, sys
import wsgi
client = wsgi.app.test_client()
statuses = [client.get("/healthz").status_code, client.get("/").status_code]
print(json.dumps({"statuses": statuses, "modules": sorted(sys.modules)}))
"""

LAZY_MODULES = [
    "pywebpush",
    "py_vapid",
    "http_ece",
    "aiohttp",
    "requests",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "alembic",
    "flask_migrate",
    "bandwidth",
    "bandwidth.models",
    "pydantic",
    "twilio.rest",
    "PIL",
]


def app_environment(database_url, redis_url):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PAWPOST_", "FLASK_"))}
    env.update(
        PAWPOST_ENV="test",
        PAWPOST_SECRET_KEY="test-secret-key",
        PAWPOST_BASE_URL="http://127.0.0.1:5000",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
    )
    return env


@pytest.fixture(scope="module")
def fresh_process(database_url, redis_url):
    completed = subprocess.run(
        [sys.executable, "-c", SERVE_REQUESTS],
        cwd=ROOT,
        env=app_environment(database_url, redis_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(completed.stdout.splitlines()[-1])


def test_fresh_process_serves_requests(fresh_process):
    assert fresh_process["statuses"] == [200, 200]


@pytest.mark.parametrize("module", LAZY_MODULES)
def test_module_not_loaded_after_requests(fresh_process, module):
    assert module not in fresh_process["modules"]


def test_sqlite_not_loaded_on_postgresql(fresh_process, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("Only a process on PostgreSQL can do without the sqlite3 module.")
    assert "sqlite3" not in fresh_process["modules"]


def test_sqlite_database_uses_wal(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'wal.db'}")

    with engine.connect() as connection:
        mode = connection.execute(text("PRAGMA journal_mode")).scalar_one()
    engine.dispose()

    assert mode == "wal"


def test_db_upgrade_command_migrates(live):
    env = app_environment(live.app.config["SQLALCHEMY_DATABASE_URI"], live.app.config["REDIS_URL"])
    completed = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr

    with live.app.app_context():
        version = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert version == ScriptDirectory(str(ROOT / "migrations")).get_current_head()

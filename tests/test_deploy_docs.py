"""The deployment guide documents every setting, and a production process starts from it."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import config

ROOT = Path(__file__).resolve().parent.parent


def configured_names():
    source = (ROOT / "config.py").read_text()
    return sorted({"PAWPOST_" + name for name in re.findall(r'_(?:env|int|bool)\("([A-Z_]+)"', source)})


@pytest.mark.parametrize("name", configured_names())
def test_setting_documented(name):
    assert f"`{name}`" in (ROOT / "docs" / "deploy.md").read_text()


@pytest.mark.parametrize("missing", ["PAWPOST_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "PAWPOST_BASE_URL"])
def test_production_requires_setting(monkeypatch, missing):
    values = {
        "PAWPOST_ENV": "production",
        "PAWPOST_SECRET_KEY": "k" * 40,
        "DATABASE_URL": "postgresql://pawpost@127.0.0.1/pawpost",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "PAWPOST_BASE_URL": "https://pawpost.example.com",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(missing)

    with pytest.raises(config.ConfigError, match=missing):
        config.load()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_gunicorn_serves_health_in_production(live):
    port = free_port()
    env = dict(os.environ)
    env.update(
        PAWPOST_ENV="production",
        PAWPOST_SECRET_KEY="s" * 40,
        DATABASE_URL=live.app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=live.app.config["REDIS_URL"],
        PAWPOST_BASE_URL="https://pawpost.example.com",
        PAWPOST_TRUSTED_PROXIES="127.0.0.1",
    )
    server = subprocess.Popen(
        # The deployment guide's command on a 2-core machine.
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "2", "--reuse-port",
         "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        response = _get_when_up(f"http://127.0.0.1:{port}/healthz", headers={"X-Forwarded-Proto": "https"})
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)

    assert response.status_code == 200
    assert response.json()["checks"] == {"app": "ok", "database": "ok", "redis": "ok"}
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def _get_when_up(url, headers, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            # The first request waits for a worker to boot, which is slow on a busy machine.
            return requests.get(url, headers=headers, timeout=30)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

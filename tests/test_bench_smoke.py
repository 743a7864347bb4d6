"""The benchmark suite runs end to end at tiny sizes and reports every figure (python -m bench --quick).

It needs PostgreSQL (the suite seeds with PostgreSQL SQL) and wrk, and skips without them. It
uses its own database, pawpost_bench_smoke, and Redis database 14 of the suite's Redis server,
and drops the database when it ends.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
EXPECTED_FIGURES = [
    "dashboard tile, one clinic",
    "portal inbox, 20 threads, ",
    "status callbacks applied, ",
    "fixed stack alone: signed-in page, ",
    "fixed stack alone: status callbacks applied, ",
    "batch API call, ",
    "fallback, callback to pointer at provider, idle",
    "pacing, busiest 1-second window",
    "send pipeline, 0 ms provider",
    "send pipeline, 150 ms provider",
    "memory, peak RSS of a web process",
    "memory, peak RSS of a worker process",
]


def smoke_database_url():
    """Return the URL of pawpost_bench_smoke on the tests' PostgreSQL server, or skip without one."""
    configured = os.environ.get("DATABASE_URL", "")
    server = configured if configured.startswith("postgres") else DEFAULT_SERVER
    parts = urlsplit(server)
    try:
        psycopg.connect(urlunsplit(parts._replace(path="/postgres")), connect_timeout=3).close()
    except psycopg.OperationalError:
        pytest.skip("The benchmark suite needs PostgreSQL; none answers at " + parts.netloc)
    return urlunsplit(parts._replace(path="/pawpost_bench_smoke"))


def test_bench_quick_run(redis_url, tmp_path):
    if shutil.which("wrk") is None:
        pytest.skip("The benchmark suite needs wrk: apt-get install -y wrk")
    database_url = smoke_database_url()
    results = tmp_path / "results.json"
    command = [
        sys.executable, "-m", "bench", "--quick", "--messages", "20000", "--duration", "2", "--http-seconds", "1",
        "--workers", "1", "--web-workers", "1", "--idle-wait", "0", "--drop-database",
        "--database-url", database_url, "--redis-url", redis_url.rsplit("/", 1)[0] + "/14", "--json", str(results),
    ]

    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    figures = json.loads(results.read_text())["figures"]
    names = [figure["name"] for figure in figures]
    for expected in EXPECTED_FIGURES:
        assert any(name.startswith(expected) for name in names), f"No figure named {expected!r} in {names}"
    for figure in figures:
        assert math.isfinite(figure["value"]), figure
        assert figure["verdict"] in ("met", "MISSED", "info"), figure
    memory = [figure for figure in figures if figure["name"].startswith("memory, ")]
    for figure in memory:
        assert figure["baseline"] > 0, figure
    floor_callbacks = next(figure for figure in figures if figure["name"].startswith("fixed stack alone: status callbacks"))
    # The floor's appliers moved the deliveries its callbacks named.
    assert floor_callbacks["extra"]["applied"] > 0, floor_callbacks

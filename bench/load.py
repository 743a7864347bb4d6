"""HTTP load with wrk (Debian's ``wrk`` package): fixed connections, bounded duration, loopback only."""

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

LUA_DIR = Path(__file__).resolve().parent / "lua"
# Lines of a replay file separate fields with a tab and headers with the ASCII unit separator.
HEADER_SEPARATOR = "\x1f"


class WrkMissing(RuntimeError):
    """wrk is not installed."""


@dataclass(frozen=True)
class LoadResult:
    """Figures of one wrk run, with latencies in milliseconds."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self):
        """Return the completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def write_replay_file(path, requests):
    """Write ``(method, path, headers, body)`` tuples in the line format that lua/replay.lua reads."""
    with open(path, "w", encoding="utf-8") as out:
        for method, target, headers, body in requests:
            header_text = HEADER_SEPARATOR.join(f"{name}: {value}" for name, value in headers.items())
            if any(ch in field for field in (target, header_text, body) for ch in "\t\n"):
                raise ValueError(f"Request to {target} has a tab or newline, which the replay format cannot carry.")
            out.write(f"{method}\t{target}\t{header_text}\t{body}\n")


def run_wrk(url, seconds, connections, threads=2, script="get.lua", script_args=(), timeout_seconds=10):
    """Run wrk against ``url`` (on 127.0.0.1) and return its LoadResult."""
    if shutil.which("wrk") is None:
        raise WrkMissing("wrk is not installed. Install it with: apt-get install -y wrk")
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"{url} is not a loopback URL; load goes only to this machine.")
    command = [
        "wrk",
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        f"--timeout={timeout_seconds}s",
        f"--script={LUA_DIR / script}",
        url,
    ]
    if script_args:
        command += ["--", *script_args]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((line for line in completed.stdout.splitlines() if line.startswith("BENCH_JSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed with exit code {completed.returncode}: {completed.stderr.strip() or completed.stdout[-500:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(data[key] for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )

"""Sampling profiles of running web and worker processes with py-spy (pinned in bench/requirements.txt)."""

import collections
import shutil
import subprocess
import sys
from pathlib import Path


def py_spy():
    """Return the py-spy executable next to this Python, or on PATH, or None."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(processes, pid, seconds, output, subprocesses=False):
    """Start sampling ``pid`` for ``seconds`` into ``output`` (collapsed stacks); return the Popen or None."""
    executable = py_spy()
    if executable is None:
        return None
    command = [executable, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
               "--format", "raw", "--output", str(output), "--nonblocking"]
    if subprocesses:
        command.append("--subprocesses")
    return processes.start(f"py-spy-{Path(output).stem}", command, env=None)


def summarize(path, top=15):
    """Return the ``top`` frames by share of samples in which they appear, and by share where they run themselves.

    Frames are ``function (file)``; the two lists show where time goes including and excluding callees.
    """
    inclusive, own = collections.Counter(), collections.Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_short(frame) for frame in stack.split(";") if frame]
        for frame in set(frames):
            inclusive[frame] += samples
        if frames:
            own[frames[-1]] += samples
    if not total:
        return {"samples": 0, "inclusive": [], "own": []}
    return {
        "samples": total,
        "inclusive": [(frame, round(100 * n / total, 1)) for frame, n in inclusive.most_common(top)],
        "own": [(frame, round(100 * n / total, 1)) for frame, n in own.most_common(top)],
    }


def _short(frame):
    # py-spy writes "function (path/to/file.py:line)"; keep the function and the file's last parts.
    name, _, location = frame.partition(" (")
    location = location.rstrip(")")
    path = location.rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if "site-packages" in parts or len(parts) > 2 else path
    return f"{name} ({short})"

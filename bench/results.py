"""Figures measured by the suite, each against its goal and, where the goal has one, its baseline."""

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Figure:
    """One measured figure: ``goal`` is ``(">=" or "<=", value)`` in the figure's unit."""

    name: str
    value: float
    unit: str
    goal: tuple | None = None
    baseline: float | None = None
    baseline_name: str = ""
    # The goal on value ÷ baseline, or on baseline ÷ value when ``baseline_divides`` is set
    # (for times, where a smaller value is better).
    ratio_goal: float | None = None
    baseline_divides: bool = False
    detail: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def met(self):
        if self.goal is None:
            return None
        sign, target = self.goal
        return self.value >= target if sign == ">=" else self.value <= target

    @property
    def ratio(self):
        if self.baseline is None or not self.value or not self.baseline:
            return None
        return self.baseline / self.value if self.baseline_divides else self.value / self.baseline

    @property
    def ratio_met(self):
        if self.ratio_goal is None or self.ratio is None:
            return None
        return self.ratio >= self.ratio_goal

    @property
    def verdict(self):
        checks = [check for check in (self.met, self.ratio_met) if check is not None]
        if not checks:
            return "info"
        return "met" if all(checks) else "MISSED"


def format_number(value):
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table_rows(figures):
    """Return the figures as rows of text: name, measured, goal, baseline, ratio (goal), verdict."""
    rows = []
    for figure in figures:
        goal = f"{figure.goal[0].replace('>=', '≥').replace('<=', '≤')} {format_number(figure.goal[1])}" if figure.goal else "—"
        ratio = "—"
        if figure.ratio is not None:
            ratio = f"{figure.ratio:.2f}"
            if figure.ratio_goal is not None:
                ratio += f" (≥ {figure.ratio_goal:g})"
        baseline = f"{format_number(figure.baseline)} {figure.baseline_name}".strip() if figure.baseline is not None else "—"
        rows.append(
            [figure.name, f"{format_number(figure.value)} {figure.unit}", goal, baseline, ratio, figure.verdict]
        )
    return rows


HEADERS = ["what", "measured", "goal", "baseline", "ratio (goal)", "verdict"]


def render_text(figures):
    rows = [HEADERS, *table_rows(figures)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADERS))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_markdown(figures):
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in table_rows(figures):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def machine():
    """Return the facts about this machine that the figures depend on."""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    memory_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "postgresql": _version(["psql", "--version"]),
        "redis": _version(["redis-server", "--version"]),
        "load_average_at_start": os.getloadavg(),
    }


def _version(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "not found"


def save(path, figures, facts):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": facts, "figures": [{**asdict(f), "met": f.met, "ratio": f.ratio, "verdict": f.verdict} for f in figures]}
    path.write_text(json.dumps(data, indent=2, default=str))

"""Run the benchmark suite: ``python -m bench`` (all benchmarks at the goals' durations) or ``--help``.

Each figure is printed with its goal, its baseline from the same run and their ratio. The run
folder ($TMPDIR/pawpost-bench/<time>/, or --run-dir) keeps the process logs, results.json and results.md.
"""

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import batch_api, callbacks, dashboard, environment, fallback, inbox, pacing, pipeline, seed
from bench.context import Run
from bench.results import Figure, machine, render_markdown, render_text, save

log = logging.getLogger("bench")

BENCHMARKS = ("dashboard", "inbox", "callbacks", "batch", "fallback", "pacing", "pipeline")
NEEDS_WEB = {"inbox", "callbacks", "batch", "fallback"}
NEEDS_SEED = {"dashboard", "inbox"}
# Goals of the send pipeline, in texts per second, by provider latency in milliseconds.
PIPELINE_GOALS = {0: 500, 150: 400}
MEMORY_GOAL_MIB = 80


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated benchmarks to run, of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--duration", type=float, default=60, help="seconds of each sustained send-pipeline measurement (default 60)")
    parser.add_argument("--http-seconds", type=float, default=30, help="seconds of each HTTP load run with wrk (default 30)")
    parser.add_argument("--messages", type=int, default=10_000_000, help="messages to seed in the database (default 10,000,000)")
    parser.add_argument("--reseed", action="store_true", help="seed again even when the database already contains --messages messages")
    parser.add_argument("--drop-database", action="store_true", help="drop the benchmark database when the run ends")
    parser.add_argument("--workers", type=int, default=4, help="RQ worker processes, Pawpost's and the baseline's (default 4)")
    parser.add_argument("--slow-provider-workers", type=int, help="worker processes for the 150 ms provider run (default: --workers)")
    parser.add_argument(
        "--reconcile-every", type=int, default=30,
        help="seconds between each worker's reconciler passes, 0 for none (default 30, as in production)",
    )
    parser.add_argument("--latencies", default="0,150", help="provider latencies of the send pipeline, in ms (default 0,150)")
    parser.add_argument(
        "--web-workers", type=int, default=len(os.sched_getaffinity(0)),
        help="gunicorn worker processes (default: one per core, as docs/deploy.md)",
    )
    parser.add_argument("--web-threads", type=int, default=2, help="threads per gunicorn worker (default 2, as docs/deploy.md)")
    parser.add_argument("--database-url", default=environment.Settings.database_url, help="the benchmark's own PostgreSQL database")
    parser.add_argument("--redis-url", default=environment.Settings.redis_url, help="the benchmark's own Redis database")
    parser.add_argument("--log-level", default="INFO", help="PAWPOST_LOG_LEVEL of the web and worker processes (default INFO)")
    parser.add_argument("--profile", action="store_true", help="record py-spy profiles of one worker during the pipeline runs")
    parser.add_argument(
        "--idle-load", type=float, default=1.5,
        help="before each benchmark, wait until the 1-minute load average is below this (default 1.5)",
    )
    parser.add_argument("--idle-wait", type=float, default=120, help="maximum wait for --idle-load, in seconds (default 120)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and durations, for the smoke test; the figures mean nothing")
    parser.add_argument("--run-dir", help="folder for the process logs and results (default $TMPDIR/pawpost-bench/<time>)")
    parser.add_argument("--json", help="also write the results JSON to this path")
    arguments = parser.parse_args(argv)
    unknown = set(arguments.only.split(",")) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    return arguments


def wait_for_quiet(threshold, longest):
    """Wait up to ``longest`` seconds for the 1-minute load average to drop below ``threshold``; return it."""
    deadline = time.monotonic() + longest
    load = os.getloadavg()[0]
    while load >= threshold and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    return load


def prepare(arguments, settings):
    """Create, migrate and seed the database as needed; return the in-process app and the fixtures."""
    from portal import create_app

    environment.check_targets(settings)
    environment.ensure_database(settings)
    environment.flush_redis(settings)
    app = create_app(environment.app_overrides(settings))
    environment.migrate(app)
    selected = set(arguments.only.split(","))
    with app.app_context():
        if selected & NEEDS_SEED and (arguments.reseed or seed.seeded_count() != arguments.messages):
            print(f"Seeding {arguments.messages:,} messages (a few minutes for 10 million)...", flush=True)
            seconds = seed.seed(arguments.messages)
            print(f"Seeded in {seconds:.0f} s; the database is {seed.database_size()}.", flush=True)
        fixtures = seed.ensure_fixtures()
    return app, fixtures


def run_selected(run, arguments):
    selected = [name for name in BENCHMARKS if name in arguments.only.split(",")]
    figures = []
    web = None
    if NEEDS_WEB & set(selected):
        web = environment.start_web(run.processes, run.settings)
    for name in selected:
        load = wait_for_quiet(arguments.idle_load, 0 if arguments.quick else arguments.idle_wait)
        print(f"Running {name} (load average {load:.2f})...", flush=True)
        if name == "pipeline":
            new = run_pipeline(run, arguments)
        else:
            module = {"dashboard": dashboard, "inbox": inbox, "callbacks": callbacks, "batch": batch_api,
                      "fallback": fallback, "pacing": pacing}[name]
            new = module.run_benchmark(run, web)
        for figure in new:
            figure.extra["load_average_at_start"] = round(load, 2)
            print(f"  {figure.name}: {figure.value:.2f} {figure.unit} ({figure.verdict})", flush=True)
        figures.extend(new)
    if web is not None:
        run.processes.stop(web)
    return figures


def run_pipeline(run, arguments):
    workers = arguments.workers
    baseline = pipeline.run_baseline(run, run.duration, workers, expected_rate=300 if arguments.quick else 3000)
    figures = []
    for latency in (int(value) for value in arguments.latencies.split(",")):
        count = workers
        if latency and arguments.slow_provider_workers:
            count = arguments.slow_provider_workers
        goal = PIPELINE_GOALS.get(latency, PIPELINE_GOALS[0])
        figures.append(pipeline.run_benchmark(run, latency, goal, count, baseline if count == workers else None))
    return figures


def stack_floor_kib(kind, settings):
    """Return the peak RSS in KiB of a process that only imports and connects the fixed stack."""
    command = [sys.executable, "-m", "bench.stack_floor", kind, settings.database_url, settings.redis_url]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"bench.stack_floor {kind} failed with exit code {completed.returncode}: {completed.stderr.strip()[-500:]}")
    return int(completed.stdout.split()[-1])


def memory_figures(processes, settings):
    """Return the peak resident memory of the Pawpost web server and of its busiest worker.

    The baseline of each is the same figure for the fixed stack alone (bench/stack_floor.py).
    """
    groups = {
        "web": [kib for name, kib in processes.peak_rss.items() if name == "web"],
        "worker": [kib for name, kib in processes.peak_rss.items() if name.startswith("worker-")],
    }
    figures = []
    for kind, peaks in groups.items():
        if peaks:
            figures.append(
                Figure(
                    name=f"memory, peak RSS of a {kind} process",
                    value=max(peaks) / 1024,
                    unit="MiB",
                    goal=("<=", MEMORY_GOAL_MIB),
                    baseline=stack_floor_kib(kind, settings) / 1024,
                    baseline_name="MiB of the fixed stack alone",
                    detail=f"highest VmHWM over {len(peaks)} runs" + (" (gunicorn master and its workers)" if kind == "web" else ""),
                )
            )
    return figures


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    arguments = parse_arguments(argv)
    settings = environment.Settings(
        database_url=arguments.database_url,
        redis_url=arguments.redis_url,
        rq_workers=arguments.workers,
        reconcile_every=arguments.reconcile_every,
        web_workers=arguments.web_workers,
        web_threads=arguments.web_threads,
        log_level=arguments.log_level,
    )
    if arguments.run_dir:
        settings.run_dir = Path(arguments.run_dir)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    for port_name in ("web_port", "baseline_port", "provider_port"):
        setattr(settings, port_name, environment.free_port(getattr(settings, port_name)))
    if arguments.quick:
        pipeline.WARMUP_SECONDS = 1
        fallback.PROBES = 5
        batch_api.CALLS = 2
        dashboard.TILE_RUNS, dashboard.SCAN_RUNS = 2, 1
        pacing.FAST_RATE, pacing.SLOW_RATE, pacing.MIN_SECONDS = 10, 5, 2
    facts = machine()
    processes = environment.Processes(settings.run_dir)
    try:
        app, fixtures = prepare(arguments, settings)
        environment.start_provider(processes, settings)
        run = Run(settings, app, processes, fixtures, arguments.duration, arguments.http_seconds, arguments.profile)
        figures = run_selected(run, arguments)
    finally:
        processes.stop_all()
    figures += memory_figures(processes, settings)
    if arguments.drop_database:
        environment.drop_database(settings)

    print()
    print(render_text(figures))
    save(settings.run_dir / "results.json", figures, facts)
    (settings.run_dir / "results.md").write_text(render_markdown(figures) + "\n")
    if arguments.json:
        save(Path(arguments.json), figures, facts)
    print(f"\nMachine: {facts['cpus']} CPUs ({facts['cpu_model']}), {facts['memory_gib']} GiB; {facts['postgresql']}; {facts['redis']}")
    print(f"Logs and results: {settings.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

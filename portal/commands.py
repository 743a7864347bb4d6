"""CLI commands: the worker, the reconciler and demo data."""

import logging

import click
from flask import current_app
from flask.cli import AppGroup

from portal import demo

log = logging.getLogger(__name__)
demo_cli = AppGroup("demo", help="Demo data for the sandbox carrier.")


def init_app(app):
    app.cli.add_command(worker)
    app.cli.add_command(reconcile)
    app.cli.add_command(demo_cli)


@click.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--reconcile-every", default=30, show_default=True, help="Seconds between reconciler passes; 0 turns it off.")
def worker(burst, reconcile_every):
    """Run an RQ worker on the signin, fallback, sms and default queues, in that priority order."""
    from notifier.worker import build_worker, start_reconciler

    app = current_app._get_current_object()
    if reconcile_every and not burst:
        start_reconciler(app, reconcile_every)
    build_worker(app).work(burst=burst, with_scheduler=True)


@click.command()
def reconcile():
    """Repair deliveries once: lost jobs, interrupted sends and missing delivery receipts."""
    from notifier.reconcile import run_all

    for name, count in run_all().items():
        click.echo(f"{name}: {count}")


@demo_cli.command("seed")
@click.option("--sandbox-config", type=click.Path(dir_okay=False), help="Write the sandbox carrier's JSON config here.")
def seed(sandbox_config):
    """Create the demo clinics, staff and clients (safe to run again)."""
    summary = demo.seed()
    demo.seed_history()
    if sandbox_config:
        demo.write_sandbox_config(sandbox_config)
    for line in summary:
        click.echo(line)


@demo_cli.command("traffic")
def traffic():
    """Send one text from each demo clinic to each outcome number of the sandbox carrier."""
    click.echo(f"Queued {demo.send_sample_traffic()} demo texts.")

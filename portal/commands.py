"""CLI commands: the worker, the reconciler, clinic settings and demo data."""

import logging

import click
from flask import current_app
from flask.cli import AppGroup

from notifier.queues import QUEUE_ORDER
from portal import demo

log = logging.getLogger(__name__)
demo_cli = AppGroup("demo", help="Demo data for the sandbox carrier.")
status_events_cli = AppGroup("status-events", help="Provider status events queued for the workers.")
clinics_cli = AppGroup("clinics", help="Clinic settings.")


def init_app(app):
    app.cli.add_command(worker)
    app.cli.add_command(reconcile)
    app.cli.add_command(demo_cli)
    app.cli.add_command(status_events_cli)
    app.cli.add_command(clinics_cli)


@click.command()
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option(
    "--queues",
    "queue_names",
    default=",".join(QUEUE_ORDER),
    show_default=True,
    help="Comma-separated queues to read, in priority order.",
)
@click.option("--reconcile-every", default=30, show_default=True, help="Seconds between reconciler passes; 0 turns it off.")
def worker(burst, reconcile_every, queue_names):
    """Run an RQ worker on the given queues, by default all of them in priority order."""
    from notifier.status_queue import start_applier
    from notifier.worker import build_worker, start_reconciler

    names = [name.strip() for name in queue_names.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUEUE_ORDER))
    if unknown or not names:
        named = ", ".join(unknown) or "no queue"
        raise click.BadParameter(f"--queues names {named} unknown; use some of {', '.join(QUEUE_ORDER)}.")
    app = current_app._get_current_object()
    if reconcile_every and not burst:
        start_reconciler(app, reconcile_every)
    if not burst:
        start_applier(app)
    build_worker(app, names).work(burst=burst, with_scheduler=True)


@click.command()
def reconcile():
    """Repair deliveries once: lost jobs, interrupted sends and missing delivery receipts."""
    from notifier.reconcile import run_all

    for name, count in run_all().items():
        click.echo(f"{name}: {count}")


@status_events_cli.command("requeue-set-aside")
def requeue_set_aside():
    """Queue again the status events set aside because applying them failed, once the cause is fixed."""
    from notifier import status_queue

    moved = status_queue.requeue_set_aside()
    click.echo(f"Queued {moved} set-aside status events again; the workers apply them.")


@clinics_cli.command("set-timezone")
@click.argument("clinic_id", type=int)
@click.argument("zone")
def set_timezone(clinic_id, zone):
    """Set a clinic's time zone (an IANA name such as America/Los_Angeles).

    It decides the clinic's quiet hours and the times the Pet Portal shows.
    """
    from zoneinfo import available_timezones

    from portal.extensions import db
    from portal.models import Clinic

    if zone not in available_timezones():
        raise click.BadParameter(
            f"{zone!r} is not an IANA time zone name. Use one such as America/New_York or America/Los_Angeles.",
            param_hint="ZONE",
        )
    clinic = db.session.get(Clinic, clinic_id)
    if clinic is None:
        raise click.BadParameter(f"Clinic {clinic_id} not found. Check the id in the clinics table.", param_hint="CLINIC_ID")
    previous = clinic.timezone
    clinic.timezone = zone
    db.session.commit()
    log.info("Clinic %s time zone set to %s (was %s).", clinic.id, zone, previous)
    click.echo(f"Clinic {clinic.id} ({clinic.name}) now uses {zone}, in place of {previous}.")


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

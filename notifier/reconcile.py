"""Periodic repairs that keep every delivery moving: lost jobs, interrupted sends, missing receipts."""

import logging
from datetime import timedelta

import redis
from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import delete, update

from notifier import providers, queues, status
from notifier.providers import ProviderError, ProviderUnreachable
from portal.extensions import db
from portal.models import SMS_CHANNELS, STATUS_RANK, Delivery, IdempotencyKey, Message, ProviderEvent, utcnow

log = logging.getLogger(__name__)

# Channels whose deliveries are sent by a queued job, and so can lose it.
QUEUED_CHANNELS = (*SMS_CHANNELS, "email", "push")
LIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
PASS_KEY = "pawpost:reconciler:pass"


def run_all():
    """Run every repair once; return how many rows each one touched."""
    return {
        "requeued": requeue_stalled(),
        "recovered": recover_interrupted_sends() + requeue_interrupted_notifications(),
        "resolved": resolve_missing_receipts(),
        "idempotency_keys_deleted": prune_idempotency_keys(),
    }


def prune_idempotency_keys(limit=5000):
    """Delete up to ``limit`` Idempotency-Key rows older than ``PAWPOST_IDEMPOTENCY_KEY_HOURS``; return the count."""
    cutoff = utcnow() - timedelta(hours=current_app.config["PAWPOST_IDEMPOTENCY_KEY_HOURS"])
    oldest = db.select(IdempotencyKey.id).where(IdempotencyKey.created_at < cutoff).order_by(IdempotencyKey.id).limit(limit)
    deleted = db.session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.id.in_(oldest)).execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if deleted:
        log.info("Deleted %s idempotency keys older than %s hours.", deleted, current_app.config["PAWPOST_IDEMPOTENCY_KEY_HOURS"])
    return deleted


def take_turn(interval_seconds):
    """Return True if this process should run the reconciler now, False if another one has this turn.

    Every worker runs the reconciler loop, but one pass per interval is enough for the whole
    deployment: the first worker to set the key runs it, and the key expires shortly before
    the next interval, so a worker that died does not stop the passes.
    """
    seconds = max(1, int(interval_seconds) - 1)
    return bool(queues.connection().set(PASS_KEY, "1", nx=True, ex=seconds))


def requeue_stalled(older_than_seconds=60, limit=500):
    """Queue again every queued SMS delivery older than the threshold whose job is gone; return the count."""
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than_seconds)
    stalled = db.session.execute(
        db.select(Delivery)
        .where(
            Delivery.status == "queued",
            Delivery.channel.in_(QUEUED_CHANNELS),
            Delivery.updated_at < cutoff,
            (Delivery.next_attempt_at.is_(None)) | (Delivery.next_attempt_at <= now),
        )
        .order_by(Delivery.id)
        .limit(limit)
    ).scalars()
    count = 0
    for delivery in stalled:
        if not _has_live_job(delivery) and queues.enqueue_send(delivery):
            count += 1
    if count:
        log.info("Reconciler queued %s stalled deliveries again.", count)
    return count


def recover_interrupted_sends(limit=100):
    """Settle sends whose worker stopped between the claim and the provider's response.

    The provider may already have the message, so it is looked up first: a match records the
    provider's id and status, no match puts the delivery back in the queue.
    """
    cutoff = utcnow() - timedelta(seconds=current_app.config["PAWPOST_STUCK_SENDING_SECONDS"])
    stuck = db.session.execute(
        db.select(Delivery)
        .where(Delivery.status == "sending", Delivery.claimed_at < cutoff, Delivery.channel.in_(SMS_CHANNELS))
        .order_by(Delivery.id)
        .limit(limit)
    ).scalars().all()
    count = 0
    for delivery in stuck:
        try:
            count += _recover(delivery)
        except (ProviderError, ProviderUnreachable) as exc:
            db.session.rollback()
            log.warning("Could not look up interrupted delivery %s at the provider (%s); will try again.", delivery.id, exc)
    return count


def _recover(delivery):
    message = delivery.message
    clinic = message.clinic
    # Look a little before the claim, since clocks of two machines differ slightly.
    since = delivery.claimed_at - timedelta(seconds=5)
    body = message.body if delivery.channel == "sms" else None
    found = _adapter(clinic).find_sent(
        message.client.mobile_number, clinic.sender_number, since, body, exclude=_known_provider_ids(delivery)
    )
    if found is None:
        moved = _queue_again(delivery)
        if moved:
            log.info("Interrupted delivery %s never reached the provider; queued again.", delivery.id)
        return int(moved)

    provider_id, provider_status, code = found
    status.advance(delivery, "accepted", provider_message_id=provider_id)
    followups = []
    if provider_status and STATUS_RANK.get(provider_status, 0) > STATUS_RANK["accepted"]:
        if status.advance(delivery, provider_status, code):
            followups = status.settle(clinic, delivery)
    db.session.commit()
    queues.enqueue_followups(followups)
    log.info("Interrupted delivery %s was taken by the provider as %s.", delivery.id, provider_id)
    return 1


def _known_provider_ids(delivery):
    """Return the provider ids of the client's other texts, which the interrupted send is not.

    The look-up window starts before the claim, so it can include the original of a pointer
    text, another message to the same client, or this delivery's failed attempt before a retry.
    """
    others = db.select(Delivery.id).join(Message, Delivery.message_id == Message.id).where(
        Message.client_id == delivery.message.client_id, Delivery.id != delivery.id
    )
    current = db.select(Delivery.provider_message_id).where(
        Delivery.id.in_(others), Delivery.provider_message_id.is_not(None)
    )
    # A retry clears the failed attempt's id from the delivery, but the event log keeps it. An
    # event logged after this attempt's claim may be this attempt's own, so it is not excluded.
    logged = db.select(ProviderEvent.provider_message_id).where(
        ProviderEvent.provider_message_id.is_not(None),
        ProviderEvent.delivery_id.in_(others)
        | ((ProviderEvent.delivery_id == delivery.id) & (ProviderEvent.received_at < delivery.claimed_at)),
    )
    return frozenset(db.session.execute(current.union(logged)).scalars())


def requeue_interrupted_notifications(limit=100):
    """Queue again email and push sends whose worker stopped mid-send.

    Neither channel can be looked up after the fact, so a send interrupted after the mail
    server or push service took it may arrive twice. Losing it would be worse.
    """
    cutoff = utcnow() - timedelta(seconds=current_app.config["PAWPOST_STUCK_SENDING_SECONDS"])
    stuck = db.session.execute(
        db.select(Delivery)
        .where(Delivery.status == "sending", Delivery.claimed_at < cutoff, Delivery.channel.in_(("email", "push")))
        .order_by(Delivery.id)
        .limit(limit)
    ).scalars().all()
    count = 0
    for delivery in stuck:
        if _queue_again(delivery):
            log.info("Interrupted %s delivery %s queued again.", delivery.channel, delivery.id)
            count += 1
    return count


def _queue_again(delivery):
    """Put a delivery stuck in ``sending`` back in the queue, unless something else moved it first."""
    moved = db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery.id, Delivery.status == "sending", Delivery.attempts == delivery.attempts)
        .values(status="queued", status_rank=STATUS_RANK["queued"], updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    db.session.commit()
    if moved:
        db.session.refresh(delivery)
        queues.enqueue_send(delivery)
    return moved


def resolve_missing_receipts(limit=200):
    """Look up texts whose delivery receipt never came; mark them unknown when the provider has no final status."""
    cutoff = utcnow() - timedelta(seconds=current_app.config["PAWPOST_RECEIPT_TIMEOUT_SECONDS"])
    waiting = db.session.execute(
        db.select(Delivery)
        .where(Delivery.status.in_(("accepted", "sent")), Delivery.updated_at < cutoff)
        .order_by(Delivery.id)
        .limit(limit)
    ).scalars().all()
    count = 0
    for delivery in waiting:
        clinic = delivery.message.clinic
        provider_status, code = None, None
        if delivery.provider_message_id:
            try:
                provider_status, code = _adapter(clinic).fetch_status(delivery.provider_message_id)
            except (ProviderError, ProviderUnreachable) as exc:
                log.warning("Could not look up delivery %s at the provider (%s).", delivery.id, exc)
        followups = []
        if provider_status and STATUS_RANK.get(provider_status, 0) >= STATUS_RANK["delivered"]:
            if status.advance(delivery, provider_status, code):
                followups = status.settle(clinic, delivery)
        else:
            status.advance(delivery, "unknown")
            log.info("Delivery %s has no delivery receipt; its final status is unknown.", delivery.id)
        db.session.commit()
        queues.enqueue_followups(followups)
        count += 1
    return count


def _adapter(clinic):
    return providers.for_clinic(
        clinic,
        sandbox_url=current_app.config["PAWPOST_SANDBOX_URL"],
        timeout=current_app.config["PAWPOST_SEND_TIMEOUT_SECONDS"],
        connections=current_app.config["PAWPOST_SEND_CONCURRENCY"],
    )


def _has_live_job(delivery):
    """Return True when the delivery's own send job, or the batch send job it belongs to, is still live."""
    try:
        job_ids = [queues.send_job_id(delivery.id, delivery.attempts + 1)]
        if delivery.attempts == 0:
            batch_job_id = queues.connection().get(queues.batch_job_key(delivery.id))
            if batch_job_id is not None:
                job_ids.append(batch_job_id.decode())
        for job_id in job_ids:
            try:
                job = Job.fetch(job_id, connection=queues.connection())
            except NoSuchJobError:
                continue
            if job.get_status() in LIVE_JOB_STATUSES:
                return True
    except redis.exceptions.RedisError:
        # Without Redis nothing can be queued anyway; the next pass tries again.
        return True
    return False

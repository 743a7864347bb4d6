"""Redis connection and the RQ queues, named by workload."""

import logging
from datetime import datetime, timezone

import redis
from flask import current_app
from rq import Queue, Retry

log = logging.getLogger(__name__)

# Workers read queues in this order, so sign-in codes (which expire in minutes) and pointer
# texts after a carrier filter go out before a backlog of ordinary sends. Email and push come
# before every SMS queue, so SMS retries and fallbacks never hold them up in a shared worker.
# A worker that reads only ("email", "push") also keeps a slow mail server from delaying texts.
QUEUE_ORDER = ("signin", "email", "push", "fallback", "sms", "default")

# The job that sends a delivery of each channel.
SEND_JOBS = {
    "sms": "notifier.jobs.send_text",
    "pointer": "notifier.jobs.send_text",
    "email": "notifier.jobs.send_email",
    "push": "notifier.jobs.send_push",
}
# The job that sends a batch's texts several at a time, see ``notifier.batch``.
BATCH_SEND_JOB = "notifier.jobs.send_texts"


def connection():
    """Return the app's Redis client, created once per app."""
    client = current_app.extensions.get("pawpost_redis")
    if client is None:
        client = redis.Redis.from_url(current_app.config["REDIS_URL"], socket_timeout=5)
        current_app.extensions["pawpost_redis"] = client
    return client


def queue(name):
    return Queue(name, connection=connection())


def send_job_id(delivery_id, attempt):
    """Return the RQ job id for one send attempt, so the reconciler can tell if it is still queued."""
    return f"send-{delivery_id}-{attempt}"


# How long the key naming a delivery's batch send job is kept: longer than any backlog lasts.
BATCH_JOB_KEY_SECONDS = 24 * 3600


def batch_job_key(delivery_id):
    """Return the Redis key that names the batch send job of a delivery's first attempt."""
    return f"pawpost:send-batch-of:{delivery_id}"


def enqueue_send(delivery, at=None):
    """Queue the send job for ``delivery``, now or at ``at``; return False when Redis is unreachable.

    The delivery row is already committed, so a failed enqueue loses nothing: the reconciler
    queues it again once Redis is reachable.
    """
    name = _send_queue(delivery)
    job = SEND_JOBS[delivery.channel]
    options = {
        "job_id": send_job_id(delivery.id, delivery.attempts + 1),
        "result_ttl": 600,
        "failure_ttl": 7 * 24 * 3600,
    }
    try:
        if at is None or at <= datetime.now(timezone.utc):
            queue(name).enqueue(job, delivery.id, **options)
        else:
            queue(name).enqueue_at(at, job, delivery.id, **options)
    except redis.exceptions.RedisError as exc:
        log.warning("Could not queue delivery %s (%s); the reconciler will retry.", delivery.id, exc)
        return False
    return True


def _send_queue(delivery):
    if delivery.channel in ("email", "push"):
        return delivery.channel
    # Pointers and retries go ahead of the bulk of first attempts.
    return "fallback" if delivery.channel == "pointer" or delivery.attempts else "sms"


def enqueue_followups(followups):
    """Queue each follow-up returned by the status code, after its transaction committed."""
    for followup in followups:
        enqueue_send(followup.delivery, followup.at)


def enqueue_media_fetch(message_id):
    """Queue the download of a message's attachments; the reconciler retries one that was lost."""
    try:
        queue("default").enqueue(
            "notifier.jobs.fetch_attachments",
            message_id,
            job_id=f"media-{message_id}",
            result_ttl=600,
            # A provider that times out gets three more tries over about six minutes.
            retry=Retry(max=3, interval=[10, 60, 300]),
        )
    except redis.exceptions.RedisError as exc:
        log.warning("Could not queue the attachments of message %s (%s).", message_id, exc)
        return False
    return True


def enqueue_line_type_check(client_id):
    """Queue a line-type lookup of a client's number; a lost one only means no early landline warning."""
    try:
        queue("default").enqueue("notifier.jobs.check_line_type", client_id, result_ttl=600)
    except redis.exceptions.RedisError as exc:
        log.warning("Could not queue the line-type check of client %s (%s).", client_id, exc)

"""Find deliveries whose job was lost and queue them again."""

import logging
from datetime import timedelta

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from notifier import queues
from portal.extensions import db
from portal.models import SMS_CHANNELS, Delivery, utcnow

log = logging.getLogger(__name__)

LIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


def requeue_stalled(older_than_seconds=60, limit=500):
    """Queue again every queued SMS delivery older than the threshold whose job is gone; return the count."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    stalled = db.session.execute(
        db.select(Delivery)
        .where(Delivery.status == "queued", Delivery.channel.in_(SMS_CHANNELS), Delivery.updated_at < cutoff)
        .order_by(Delivery.id)
        .limit(limit)
    ).scalars()
    count = 0
    for delivery in stalled:
        if _has_live_job(delivery):
            continue
        if queues.enqueue_send(delivery):
            count += 1
    if count:
        log.info("Reconciler queued %s stalled deliveries again.", count)
    return count


def _has_live_job(delivery):
    job_id = queues.send_job_id(delivery.id, delivery.attempts + 1)
    try:
        job = Job.fetch(job_id, connection=queues.connection())
    except NoSuchJobError:
        return False
    except redis.exceptions.RedisError:
        return True
    return job.get_status() in LIVE_JOB_STATUSES

"""Operational endpoints for load balancers and monitors."""

import hmac
import logging
import os

import redis
from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from notifier import queues, status_queue
from portal.extensions import db

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    """Return 200 when the app, the database and Redis all respond, else 503 naming the failing part."""
    checks = {"app": "ok", "database": "ok", "redis": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("Health check: database failed (%s).", type(exc).__name__)
        checks["database"] = "failed"
    try:
        queues.connection().ping()
    except redis.exceptions.RedisError as exc:
        log.warning("Health check: Redis failed (%s).", type(exc).__name__)
        checks["redis"] = "failed"
    healthy = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if healthy else "failed", checks=checks), 200 if healthy else 503


@bp.get("/metrics")
def metrics():
    """Expose Prometheus metrics to a scraper that sends PAWPOST_METRICS_TOKEN as a bearer token."""
    expected = current_app.config["PAWPOST_METRICS_TOKEN"]
    if not expected:
        abort(404)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected.encode()):
        return Response("A bearer token is required.\n", 401, {"WWW-Authenticate": "Bearer"})

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Web and worker processes each write their counters to this directory.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry) + generate_latest(_queue_registry())
    return Response(body, mimetype="text/plain; version=0.0.4")


def _queue_registry():
    registry = CollectorRegistry()
    depth = GaugeMetricFamily(
        "pawpost_queue_depth", "Jobs waiting in each RQ queue, and status events waiting to be applied.", labels=["queue"]
    )
    try:
        for name in queues.QUEUE_ORDER:
            depth.add_metric([name], len(queues.queue(name)))
        depth.add_metric(["status-events"], status_queue.waiting())
    except redis.exceptions.RedisError as exc:
        log.warning("Metrics: queue depth unavailable (%s).", type(exc).__name__)
    registry.register(_Fixed(depth))
    return registry


class _Fixed:
    """A collector that returns metric families computed beforehand."""

    def __init__(self, *families):
        self.families = families

    def collect(self):
        return iter(self.families)

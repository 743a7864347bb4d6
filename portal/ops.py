"""Operational endpoints for load balancers and monitors."""

import logging

import redis
from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from notifier import queues
from portal.extensions import db

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    """Report 200 when the app, the database and Redis all answer, else 503 naming the failing part."""
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

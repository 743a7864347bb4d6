"""Process-wide logging, configured once at each entry point."""

import contextvars
import json
import logging
import logging.config
import os
import re
from contextlib import contextmanager

from config import check_log_level

# Ids of the message and clinic a line is about, set around each job and webhook.
_context = contextvars.ContextVar("pawpost_log_context", default={})
# Anything shaped like a phone number: a +, then 10 to 15 digits, or 10+ digits with separators.
# URL-encoded (%2B…) numbers count too, since request URLs carry them in query strings.
PHONE_PATTERN = re.compile(r"(?:\+|%2[Bb])\d{10,15}|\b\d{3}[-. )]{0,2}\d{3}[-. ]\d{4}\b")


@contextmanager
def log_context(**ids):
    """Stamp every log line inside the block with ``ids`` (message_id, clinic_id, delivery_id)."""
    token = _context.set({**_context.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


_TRACEBACKS = logging.Formatter()


class ContextFilter(logging.Filter):
    """Add the context ids to each record, and mask phone numbers that slipped into a message."""

    def filter(self, record):
        ids = _context.get()
        record.ids = " ".join(f"{key}={value}" for key, value in sorted(ids.items()))
        record.context = ids
        text = record.getMessage()
        masked = PHONE_PATTERN.sub(_mask, text)
        if masked != text:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Database errors quote the values of the failed statement, phone numbers included.
            record.exc_text = PHONE_PATTERN.sub(_mask, _TRACEBACKS.formatException(record.exc_info))
        return True


def _mask(match):
    digits = re.sub(r"\D", "", match.group(0))
    return "•" * (len(digits) - 2) + digits[-2:]


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line."""

    def format(self, record):
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "context", {}),
        }
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level=None):
    """Send logs to stderr, as JSON when PAWPOST_LOG_JSON is true."""
    as_json = os.environ.get("PAWPOST_LOG_JSON", "").lower() in ("1", "true", "yes", "on")
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s %(ids)s"},
                "json": {"()": JsonFormatter},
            },
            "filters": {"context": {"()": ContextFilter}},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "json" if as_json else "plain",
                    "filters": ["context"],
                },
            },
            # The Twilio SDK logs each request at INFO; lookups put phone numbers in the URL.
            # urllib3 logs each request URL at DEBUG, and Bandwidth searches put numbers in the query.
            # Alembic logs a line per built-in plugin at INFO when `flask db` first imports it.
            "loggers": {
                "twilio.http_client": {"level": "WARNING"},
                "urllib3": {"level": "WARNING"},
                "alembic.runtime.plugins": {"level": "WARNING"},
            },
            "root": {"level": level or check_log_level(os.environ.get("PAWPOST_LOG_LEVEL", "INFO")), "handlers": ["stderr"]},
        }
    )

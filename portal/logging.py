"""Process-wide logging, configured once at each entry point."""

import json
import logging
import logging.config
import os


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line."""

    def format(self, record):
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level=None):
    """Send logs to stderr, as JSON when PAWPOST_LOG_JSON is true."""
    as_json = os.environ.get("PAWPOST_LOG_JSON", "").lower() in ("1", "true", "yes", "on")
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
                "json": {"()": JsonFormatter},
            },
            "handlers": {
                "stderr": {"class": "logging.StreamHandler", "formatter": "json" if as_json else "plain"},
            },
            # The Twilio SDK logs each request at INFO; lookups put phone numbers in the URL.
            "loggers": {"twilio.http_client": {"level": "WARNING"}},
            "root": {"level": level or os.environ.get("PAWPOST_LOG_LEVEL", "INFO"), "handlers": ["stderr"]},
        }
    )

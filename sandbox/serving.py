"""HTTP serving helpers: a request log line that never shows a phone number."""

import re

from werkzeug.serving import WSGIRequestHandler

PHONE_PATH_PATTERN = re.compile(r"^/phones/[^/]+")


def redact_path(path: str) -> str:
    """Drop the query string (it may carry numbers) and hide the number in /phones paths."""
    path = path.split("?", 1)[0]
    return PHONE_PATH_PATTERN.sub("/phones/<number>", path)


class RedactingRequestHandler(WSGIRequestHandler):
    """Werkzeug request handler whose access log omits phone numbers and query strings."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log the method, redacted path and status of one request."""
        path = redact_path(getattr(self, "path", ""))
        self.log("info", '"%s %s" %s', getattr(self, "command", "-"), path, code)

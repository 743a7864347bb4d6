"""HTTP serving helpers: a request log line that never shows a phone number."""

import re

from werkzeug.serving import WSGIRequestHandler

# Paths that carry a phone number: phone pages and Twilio Lookup requests.
PHONE_PATH_PATTERN = re.compile(r"^/(phones|v2/PhoneNumbers)/[^/]+")


def redact_path(path: str) -> str:
    """Drop the query string (it may carry numbers) and hide the number in /phones and lookup paths."""
    path = path.split("?", 1)[0]
    return PHONE_PATH_PATTERN.sub(r"/\1/<number>", path)


class RedactingRequestHandler(WSGIRequestHandler):
    """Werkzeug request handler whose access log omits phone numbers and query strings."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log the method, redacted path and status of one request."""
        path = redact_path(getattr(self, "path", ""))
        self.log("info", '"%s %s" %s', getattr(self, "command", "-"), path, code)

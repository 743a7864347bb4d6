"""Rate-limit counters kept per app in Redis, with the ``limits`` library's fixed windows.

Each app keeps its own strategy and storage, so two apps in one process (the test suite builds
several) never count into each other's storage. Only the actions that name a limit pay for a
count; other requests do no rate-limit work.
"""

from flask import current_app
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

EXTENSION_KEY = "pawpost_rate_limiter"


def current_limiter():
    """Return the current app's fixed-window limiter, created on first use."""
    strategy = current_app.extensions.get(EXTENSION_KEY)
    if strategy is None:
        storage = storage_from_string(current_app.config["RATELIMIT_STORAGE_URI"])
        strategy = FixedWindowRateLimiter(storage)
        current_app.extensions[EXTENSION_KEY] = strategy
    return strategy

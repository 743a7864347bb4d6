"""Rate-limit counters kept per app, on the storage configured for Flask-Limiter (Redis).

Flask-Limiter's ``Limiter`` keeps one storage, set by the last ``init_app``, so a second app in
the same process (the test suite builds several) would move the first app's counters to its own
storage. Counting through the ``limits`` strategy stored on each app keeps them apart.
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

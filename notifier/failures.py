"""Logging for background loops that retry after a failure, such as the status-event applier.

A loop that retries every second or every pass would otherwise log each attempt through a
database or Redis outage that can last hours.
"""

import time

# While a loop keeps failing, it logs the failures at most this often.
LOG_EVERY_SECONDS = 60


def error_name(exc):
    """Return the class of ``exc``, and of the driver's error beneath it: never its text.

    Database errors quote the statement's values, phone numbers included.
    """
    cause = getattr(exc, "orig", None)
    return f"{type(exc).__name__}: {type(cause).__name__}" if cause is not None else type(exc).__name__


class FailureLog:
    """Log a loop's failures when they start, then at most every ``every`` seconds, and its recovery.

    ``task`` names what failed ("Applying status events") and ``retry`` when the loop tries again
    ("each second").
    """

    def __init__(self, logger, task, retry, every=LOG_EVERY_SECONDS, clock=time.monotonic):
        self.logger = logger
        self.task = task
        self.retry = retry
        self.every = every
        self.clock = clock
        self.failures = 0
        self.next_log = 0.0

    def failed(self, exc, expected=True):
        """Count a failed attempt and log it if it is the first or the last line is ``every`` seconds old.

        An ``expected`` failure (an outage) gets a warning. Others get an error, with the traceback
        the first time, so call this from the ``except`` block.
        """
        self.failures += 1
        now = self.clock()
        if self.failures > 1 and now < self.next_log:
            return
        self.next_log = now + self.every
        message = "%s failed (%s), %s failed attempt(s) so far; trying again %s."
        arguments = (self.task, error_name(exc), self.failures, self.retry)
        if expected:
            self.logger.warning(message, *arguments)
        else:
            self.logger.error(message, *arguments, exc_info=self.failures == 1)

    def succeeded(self):
        """Log the recovery after failed attempts, and start counting again."""
        if self.failures:
            self.logger.info("%s succeeded again after %s failed attempt(s).", self.task, self.failures)
        self.failures = 0

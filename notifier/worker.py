"""The RQ worker: jobs run in the worker process, each inside its own app context."""

import logging
import threading

import redis
from rq import SimpleWorker
from sqlalchemy.exc import DBAPIError

from notifier import queues
from notifier.failures import FailureLog

log = logging.getLogger(__name__)


class AppWorker(SimpleWorker):
    """A worker that runs jobs without forking and gives each a fresh app context.

    Skipping the fork per job keeps the send pipeline fast; the fresh app context gives each job
    its own database session, removed when the job ends.
    """

    flask_app = None

    def execute_job(self, job, queue):
        with self.flask_app.app_context():
            return super().execute_job(job, queue)

    def subscribe(self):
        """Listen for RQ commands with a one-second poll instead of RQ's sixty.

        redis-py 8 joins the listener thread on shutdown, so the poll interval is how long a
        stopping worker waits.
        """
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )


def build_worker(app, queue_names=queues.QUEUE_ORDER):
    """Return a worker for ``app`` that reads ``queue_names`` in priority order."""
    with app.app_context():
        connection = queues.connection()
        worker = AppWorker([queues.queue(name) for name in queue_names], connection=connection)
    worker.flask_app = app
    return worker


def start_reconciler(app, interval_seconds):
    """Run the reconciler every ``interval_seconds`` on a daemon thread; return a stop event.

    Each worker starts one, and at most one of them runs a pass in each interval.
    """
    from notifier.reconcile import run_all, take_turn

    stop = threading.Event()

    def loop():
        failures = FailureLog(log, "Reconciling", f"in {interval_seconds} s")
        while not stop.wait(interval_seconds):
            with app.app_context():
                try:
                    if take_turn(interval_seconds):
                        run_all()
                        failures.succeeded()
                except (redis.exceptions.RedisError, DBAPIError) as exc:
                    # Redis or the database is unreachable or failing: the next pass tries again.
                    failures.failed(exc)
                except Exception as exc:
                    # The loop must outlive one bad pass. FailureLog logs the first failure's
                    # traceback, then a line at most once a minute while passes keep failing.
                    failures.failed(exc, expected=False)

    threading.Thread(target=loop, name="reconciler", daemon=True).start()
    return stop

"""FailureLog: a retrying loop's failures logged when they start, at most once a minute, and its recovery."""

import logging
import time

import pytest

from notifier.failures import FailureLog

LOGGER = "pawpost.test.failures"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def records(caplog):
    caplog.set_level("INFO", logger=LOGGER)
    return lambda: [record for record in caplog.records if record.name == LOGGER]


def failure_log(clock=None):
    return FailureLog(logging.getLogger(LOGGER), "Applying status events", "each second", every=60, clock=clock or FakeClock())


def test_repeated_failures_logged_once_a_minute(records):
    clock = FakeClock()
    failures = failure_log(clock)

    for _second in range(59):
        failures.failed(ConnectionError("refused"))
        clock.now += 1
    logged_in_first_minute = len(records())
    clock.now += 1
    failures.failed(ConnectionError("refused"))

    assert logged_in_first_minute == 1
    assert len(records()) == 2
    assert records()[1].getMessage() == (
        "Applying status events failed (ConnectionError), 60 failed attempt(s) so far; trying again each second."
    )


def test_recovery_logged_once(records):
    failures = failure_log()

    failures.failed(ConnectionError("refused"))
    failures.failed(ConnectionError("refused"))
    failures.succeeded()
    failures.succeeded()

    messages = [record.getMessage() for record in records()]
    assert messages[-1] == "Applying status events succeeded again after 2 failed attempt(s)."
    assert len(messages) == 2


def test_failures_after_recovery_logged_again(records):
    failures = failure_log()

    failures.failed(ConnectionError("refused"))
    failures.succeeded()
    failures.failed(ConnectionError("refused"))

    warnings = [record for record in records() if record.levelname == "WARNING"]
    assert len(warnings) == 2
    assert "1 failed attempt(s)" in warnings[1].getMessage()


def test_unexpected_failure_traceback_only_first(records):
    clock = FakeClock()
    failures = failure_log(clock)

    for _attempt in range(2):
        try:
            raise KeyError("clinic_id")
        except KeyError as exc:
            failures.failed(exc, expected=False)
        clock.now += 61

    logged = records()
    assert [record.levelname for record in logged] == ["ERROR", "ERROR"]
    assert logged[0].exc_info[0] is KeyError
    assert not logged[1].exc_info


def test_message_names_error_class_not_text(records):
    failures = failure_log()

    failures.failed(ValueError("+15551230001 is not allowed"))

    assert "+1555" not in records()[0].getMessage()
    assert "(ValueError)" in records()[0].getMessage()


def test_reconciler_recovery_only_after_own_pass(app, monkeypatch, caplog):
    from notifier import reconcile, worker

    turns = iter([RuntimeError("database gone"), False, False, True])
    passes = []

    def take_turn(_interval):
        turn = next(turns, False)
        if isinstance(turn, Exception):
            raise turn
        return turn

    monkeypatch.setattr(reconcile, "take_turn", take_turn)
    monkeypatch.setattr(reconcile, "run_all", lambda: passes.append(1))
    caplog.set_level("INFO", logger=worker.log.name)

    stop = worker.start_reconciler(app, 0.02)
    wait_until = time.monotonic() + 5
    while not passes and time.monotonic() < wait_until:
        time.sleep(0.01)
    time.sleep(0.05)
    stop.set()

    messages = [record.getMessage() for record in caplog.records if record.name == worker.log.name]
    assert passes == [1]
    assert messages == [
        "Reconciling failed (RuntimeError), 1 failed attempt(s) so far; trying again in 0.02 s.",
        "Reconciling succeeded again after 1 failed attempt(s).",
    ]

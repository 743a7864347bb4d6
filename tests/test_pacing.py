"""Per-sender pacing: the sliding-window reservations in Redis and the worker that waits for them."""

import time

import pytest

import config
from conftest import run_worker
from helpers import send_via_api
from notifier import pacing


def max_in_window(times, window=1.0):
    """Return the largest number of ``times`` (seconds) that fall in one half-open window."""
    ordered = sorted(times)
    return max((sum(1 for t in ordered if start <= t < start + window) for start in ordered), default=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("+15550001111=10", {"+15550001111": 10}),
        (" +15550001111=10 , +15550002222=3 ,", {"+15550001111": 10, "+15550002222": 3}),
    ],
)
def test_parse_rates(text, expected):
    assert pacing.parse_rates(text) == expected


@pytest.mark.parametrize("text", ["+15550001111", "+15550001111=fast", "=3", "+15550001111=2.5"])
def test_parse_rates_invalid(text):
    with pytest.raises(pacing.InvalidRate):
        pacing.parse_rates(text)


@pytest.mark.parametrize("text", ["+15550001111", "15550001111=3", "+15550001111=-1", "+15550001111=2.5"])
def test_config_rejects_sender_rates(monkeypatch, text):
    monkeypatch.setenv("PAWPOST_SENDER_RATES", text)

    with pytest.raises(config.ConfigError, match="PAWPOST_SENDER_RATES"):
        config.load({"PAWPOST_ENV": "development"})


def test_sender_rate_override(app, monkeypatch):
    monkeypatch.setitem(app.config, "PAWPOST_SENDER_RATE", 5)
    monkeypatch.setitem(app.config, "PAWPOST_SENDER_RATES", "+15550001111=2")

    assert pacing.sender_rate("+15550001111") == 2
    assert pacing.sender_rate("+15550002222") == 5


def test_unpaced_sender_waits_nothing(app):
    assert pacing.wait_for_turn("+15550001111") == 0.0


def test_reservations_keep_window(app):
    started = time.monotonic()
    waits = [pacing.reserve("+15550001111", rate=3, margin_ms=25) for _ in range(10)]
    elapsed = time.monotonic() - started
    slots = [wait + elapsed for wait in waits]

    assert waits[:4] == pytest.approx([0, 0.342, 0.683, 1.025], abs=0.05)
    assert waits[9] == pytest.approx(3.075, abs=0.05)
    assert max_in_window(slots) == 3


@pytest.mark.parametrize(("oversleep", "new_slots"), [(0.0, 0), (0.2, 1)])
def test_late_wake_takes_new_slot(app, monkeypatch, caplog, oversleep, new_slots):
    monkeypatch.setitem(app.config, "PAWPOST_SENDER_RATE", 10)
    real_sleep = time.sleep
    pacing.reserve("+15550001111", rate=10)

    def sleep_late(seconds):
        # A busy process wakes the thread ``oversleep`` seconds after its slot.
        real_sleep(seconds + oversleep)

    monkeypatch.setattr(pacing.time, "sleep", sleep_late)
    with caplog.at_level("INFO", logger="notifier.pacing"):
        pacing.wait_for_turn("+15550001111")
    retakes = [record for record in caplog.records if "takes the next free slot" in record.getMessage()]

    assert len(retakes) == new_slots


def test_reservations_per_sender(app):
    for _ in range(3):
        pacing.reserve("+15550001111", rate=3)

    assert pacing.reserve("+15550002222", rate=3) == pytest.approx(0, abs=0.05)
    assert pacing.reserve("+15550001111", rate=3) == pytest.approx(1.025, abs=0.05)


def test_worker_paces_sender(client, live, factory, monkeypatch):
    clinic = factory.clinic("bandwidth", fallback=False)
    token = factory.api_token(clinic)
    monkeypatch.setitem(live.app.config, "PAWPOST_SENDER_RATES", f"{clinic.sender_number}=2")
    for index in range(5):
        send_via_api(client, token, f"+1555123{index:04d}")

    run_worker(live.app)

    created = sorted(d.created.timestamp() for d in live.carrier.all_deliveries())
    assert len(created) == 5
    assert max_in_window(created) == 2
    assert created[-1] - created[0] >= 2.0

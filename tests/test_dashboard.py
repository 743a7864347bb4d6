"""System Health Dashboard figures against seeded data with known rates."""

import csv
import io
import json
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func

from conftest import STAFF_PASSWORD, run_worker, wait_for
from notifier import stats
from portal.extensions import db
from portal.models import Delivery, Escalation, SmsClosedDay, SmsDailyStat, SmsHourlyStat, utcnow


def seed(clinic, hours_ago, outcome, count, category=""):
    stats.add_history(clinic.id, utcnow() - timedelta(hours=hours_ago), outcome, count, category)
    db.session.commit()


def sign_in(client, user):
    page = client.get("/admin/login")
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1).decode()
    client.post("/admin/login", data={"csrf_token": token, "email": user.email, "password": STAFF_PASSWORD})
    return token


@pytest.fixture
def clinic(factory):
    return factory.clinic("bandwidth")


@pytest.fixture
def seeded(clinic):
    # Last 24 hours: 90 delivered, 10 failed (6 landline, 4 carrier filtered): 10 %.
    seed(clinic, 2, "delivered", 90)
    seed(clinic, 2, "failed", 6, "landline")
    seed(clinic, 3, "failed", 4, "carrier_filtered")
    # Three days ago: 100 delivered, 0 failed; 7 days: 20 failed of 200 = 10 %.
    seed(clinic, 72, "delivered", 100)
    seed(clinic, 72, "suppressed", 5, "opted_out")
    # Twenty days ago: 100 delivered, 100 failed landlines: 30 days = 120 of 400 = 30 %.
    seed(clinic, 480, "delivered", 100)
    seed(clinic, 480, "failed", 100, "landline")
    return clinic


@pytest.mark.parametrize(
    ("window", "attempted", "failed", "rate"),
    [("24h", 100, 10, 0.10), ("7d", 200, 10, 0.05), ("30d", 400, 110, 0.275)],
)
def test_window_figures_match_seed(seeded, window, attempted, failed, rate):
    totals, _by_category = stats.summary([seeded.id])["windows"][window]

    assert totals.attempted == attempted
    assert totals.failed == failed
    assert totals.rate == pytest.approx(rate)


def test_suppressed_counted_apart(seeded):
    totals, _ = stats.summary([seeded.id])["windows"]["7d"]

    assert totals.suppressed == 5
    assert totals.attempted == 200


def test_split_by_category(seeded):
    _totals, by_category = stats.summary([seeded.id])["windows"]["24h"]

    assert by_category == {"landline": 6, "carrier_filtered": 4}


@pytest.mark.parametrize(
    ("rate", "state"),
    [(None, "healthy"), (0.0, "healthy"), (0.049, "healthy"), (0.05, "watch"), (0.08, "watch"), (0.081, "investigate")],
)
def test_state_thresholds(rate, state):
    assert stats.state_for(rate) == state


def test_daily_series_has_thirty_days(seeded):
    daily = stats.daily_rates([seeded.id], days=30)

    assert len(daily) == 30
    assert sum(attempted for _day, attempted, _failed in daily) == 400


def test_other_clinic_excluded(seeded, factory):
    other = factory.clinic("twilio")
    seed(other, 1, "failed", 50, "blocked")

    totals, by_category = stats.summary([seeded.id])["windows"]["24h"]

    assert totals.failed == 10
    assert "blocked" not in by_category


def test_sent_texts_counted_once_settled(client, live, factory):
    clinic = factory.clinic("bandwidth")
    token = factory.api_token(clinic)
    for suffix in ("01", "02", "20"):
        client.post("/api/v1/messages", json={"to": f"+155512300{suffix}", "body": "Checkup due."}, headers={"Authorization": f"Bearer {token}"})
    run_worker(live.app)

    def settled():
        db.session.rollback()
        rows = db.session.execute(db.select(Delivery).where(Delivery.channel == "sms")).scalars().all()
        return all(row.is_final for row in rows)

    wait_for(settled)
    totals, by_category = stats.summary([clinic.id])["windows"]["24h"]

    assert totals.attempted == 3
    assert totals.failed == 1
    assert by_category == {"landline": 1}


def test_dashboard_page_shows_rates(client, seeded, factory):
    sign_in(client, factory.staff(seeded))

    page = client.get("/admin/health")

    assert page.status_code == 200
    assert b"SMS Failure Rates" in page.data
    assert b'data-state="watch"' in page.data
    assert b"10.0 %" in page.data
    assert b"<svg" in page.data


def test_worklist_csv_lists_landline_client(client, live, factory):
    clinic = factory.clinic("bandwidth")
    factory.client(clinic, "+15551230020", name="Lana Landline")
    token = factory.api_token(clinic)
    client.post("/api/v1/messages", json={"to": "+15551230020", "body": "Hi"}, headers={"Authorization": f"Bearer {token}"})
    run_worker(live.app)

    def landline_known():
        db.session.rollback()
        return db.session.execute(db.select(Delivery).where(Delivery.category == "landline")).first()

    wait_for(landline_known)
    sign_in(client, factory.staff(clinic))

    response = client.get("/admin/health/worklist.csv")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))

    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert rows[1][1:4] == ["Lana Landline", "+15551230020", "landline"]


def test_worklist_hides_other_clinics(client, live, factory):
    clinic, other = factory.clinic("bandwidth"), factory.clinic("bandwidth")
    token = factory.api_token(other)
    client.post("/api/v1/messages", json={"to": "+15551230020", "body": "Hi"}, headers={"Authorization": f"Bearer {token}"})
    run_worker(live.app)
    sign_in(client, factory.staff(clinic))

    rows = list(csv.reader(io.StringIO(client.get("/admin/health/worklist.csv").get_data(as_text=True))))

    assert rows == [["client_id", "name", "mobile_number", "problem", "last_seen"]]


def test_escalation_records_figures(client, seeded, factory):
    user = factory.staff(seeded)
    token = sign_in(client, user)

    response = client.post("/admin/health/escalations", data={"csrf_token": token, "note": "Verizon keeps filtering"})
    escalation = db.session.execute(db.select(Escalation)).scalar_one()
    figures = json.loads(escalation.figures)

    assert response.status_code == 302
    assert escalation.staff_id == user.id
    assert escalation.note == "Verizon keeps filtering"
    assert figures["24h"]["failed"] == 10
    assert figures["7d"]["rate"] == pytest.approx(0.05)


def test_escalation_requires_csrf(client, seeded, factory):
    sign_in(client, factory.staff(seeded))

    response = client.post("/admin/health/escalations", data={"note": "x"})

    assert response.status_code == 400
    assert db.session.execute(db.select(Escalation)).first() is None


def test_rates_by_clinic_match_summary(seeded, factory):
    other = factory.clinic("twilio")
    seed(other, 1, "delivered", 30)
    seed(other, 1, "failed", 10, "blocked")

    rates = stats.rates_by_clinic()

    assert rates[seeded.id]["7d"].rate == pytest.approx(0.05)
    assert rates[other.id]["24h"].rate == pytest.approx(0.25)


def test_daily_series_sums_by_day(seeded):
    daily = stats.daily_rates([seeded.id], days=30)
    by_failures = [failed for _day, _attempted, failed in daily if failed]

    assert daily[-1][0].tzinfo is not None
    assert sum(by_failures) == 110


def test_operator_sees_every_clinic(client, seeded, factory):
    other = factory.clinic("twilio", name="Other Clinic")
    seed(other, 1, "delivered", 30)
    sign_in(client, factory.staff(None, operator=True))

    page = client.get("/admin/health")

    assert page.status_code == 200
    assert f'data-clinic="{seeded.id}"'.encode() in page.data
    assert b"Other Clinic" in page.data


# Closed days ------------------------------------------------------------------------------
#
# The history is hourly rows over 33 days, several a day, for two clinics. Every figure read
# through the summed rows must equal the same figure added up from the hourly rows alone.

HISTORY_OUTCOMES = (("delivered", ""), ("failed", "landline"), ("failed", "carrier_filtered"), ("unknown", ""), ("suppressed", "opted_out"))


@pytest.fixture
def history(factory):
    clinics = [factory.clinic("bandwidth"), factory.clinic("twilio")]
    base = utcnow().replace(minute=0, second=0, microsecond=0)
    for hours_ago in range(0, 33 * 24, 5):
        for number, clinic in enumerate(clinics):
            outcome, category = HISTORY_OUTCOMES[(hours_ago + number) % len(HISTORY_OUTCOMES)]
            hour = base - timedelta(hours=hours_ago)
            db.session.add(SmsHourlyStat(clinic_id=clinic.id, hour=hour, outcome=outcome, category=category, count=1 + hours_ago % 7))
    db.session.commit()
    return [clinic.id for clinic in clinics]


def hourly_reference(clinic_ids, since):
    rows = db.session.execute(db.select(SmsHourlyStat).where(SmsHourlyStat.clinic_id.in_(clinic_ids), SmsHourlyStat.hour >= since)).scalars()
    totals = stats.Window()
    for row in rows:
        setattr(totals, row.outcome, getattr(totals, row.outcome) + row.count)
    return totals


# Times of day for "now": just after midnight (yesterday not yet closed), after the hour
# margin, midday and just before midnight.
NOW_OFFSETS = [timedelta(minutes=20), timedelta(hours=1, minutes=5), timedelta(hours=12, minutes=30), timedelta(hours=23, minutes=59)]


# The clinics' own figures read daily rows; None (every clinic, for operators) reads the
# hourly rows summed across clinics.
SCOPES = pytest.mark.parametrize("every_clinic", [False, True], ids=["clinics", "every-clinic"])


@SCOPES
@pytest.mark.parametrize("offset", NOW_OFFSETS, ids=["00:20", "01:05", "12:30", "23:59"])
@pytest.mark.parametrize("window", list(stats.WINDOWS))
def test_windows_equal_hourly_sums(history, offset, window, every_clinic):
    now = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1) + offset
    expected = hourly_reference(history, now - stats.WINDOWS[window])

    totals, _by_category = stats.summary(None if every_clinic else history, now=now)["windows"][window]

    assert totals == expected


@SCOPES
@pytest.mark.parametrize("offset", NOW_OFFSETS, ids=["00:20", "01:05", "12:30", "23:59"])
def test_daily_chart_equals_hourly_sums(history, offset, every_clinic):
    now = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1) + offset
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    expected = []
    for days_back in range(29, -1, -1):
        day = today - timedelta(days=days_back)
        rows = db.session.execute(
            db.select(SmsHourlyStat).where(
                SmsHourlyStat.clinic_id.in_(history),
                SmsHourlyStat.hour >= day,
                SmsHourlyStat.hour < day + timedelta(days=1),
                SmsHourlyStat.outcome != "suppressed",
            )
        ).scalars().all()
        expected.append((day, sum(row.count for row in rows), sum(row.count for row in rows if row.outcome == "failed")))

    assert stats.daily_rates(None if every_clinic else history, 30, now=now) == expected


def test_reading_closes_past_days_once(history):
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    midday = midnight.replace(hour=12)
    # Until CLOSE_AFTER past the real midnight, yesterday may still get texts and stays open.
    expected = 30 if utcnow() - stats.CLOSE_AFTER >= midnight else 29
    stats.summary(history, now=midday)
    stats.summary(history, now=midday)
    closed = db.session.execute(db.select(func.count()).select_from(SmsClosedDay)).scalar()

    assert closed == expected


def test_closed_day_sums_equal_its_hours(history):
    stats.summary(history)
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    hourly = db.session.execute(
        db.select(func.sum(SmsHourlyStat.count)).where(SmsHourlyStat.hour >= day, SmsHourlyStat.hour < day + timedelta(days=1))
    ).scalar()
    daily = db.session.execute(db.select(func.sum(SmsDailyStat.count)).where(SmsDailyStat.day == day)).scalar()

    assert daily == hourly


@SCOPES
def test_history_reopens_closed_day(history, every_clinic):
    scope = None if every_clinic else history
    before = stats.summary(scope)["windows"]["7d"][0].failed
    stats.add_history(history[0], utcnow() - timedelta(days=3), "failed", 40, "landline")
    db.session.commit()

    after = stats.summary(scope)["windows"]["7d"][0].failed

    assert after == before + 40


def test_clinic_rates_equal_hourly_sums(history):
    rates = stats.rates_by_clinic(history)
    expected = hourly_reference([history[1]], utcnow() - stats.WINDOWS["30d"])

    assert rates[history[1]]["30d"].failed == expected.failed


def test_history_import_waits_for_summing_reader(app, history):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite lets one writer at a time without a lock")
    done = threading.Event()

    def import_history():
        with app.app_context():
            stats.add_history(history[0], utcnow() - timedelta(days=2), "failed", 6, "landline")
            db.session.commit()
        done.set()

    with db.engine.begin() as connection:
        stats.lock_rollups(connection)
        thread = threading.Thread(target=import_history)
        thread.start()
        waited = not done.wait(0.3)
    thread.join(5)

    assert waited
    assert done.is_set()

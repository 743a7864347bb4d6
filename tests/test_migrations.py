"""The migrations build the schema the models describe."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, make_url, text

from portal import create_app, migrate
from portal.extensions import db


def test_migrated_schema_matches_models(app):
    # The live fixture built the tables by running every migration, not from the models.
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)

    assert differences == []


@pytest.fixture
def scratch_app(database_url, redis_url, tmp_path):
    """Return an app on a database of its own, empty, so migrations can run down and up."""
    if database_url.startswith("postgresql"):
        url = make_url(database_url)
        name = f"{url.database}_migrations"
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        scratch_url = url.set(database=name).render_as_string(hide_password=False)
    else:
        scratch_url = "sqlite:///" + str(tmp_path / "migrations.db")
    app = create_app(
        {
            "PAWPOST_ENV": "test",
            "SECRET_KEY": "test-secret-key",
            "SQLALCHEMY_DATABASE_URI": scratch_url,
            "REDIS_URL": redis_url,
            "PAWPOST_BASE_URL": "http://127.0.0.1:9",
        }
    )
    migrate.bind(app)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()
    if database_url.startswith("postgresql"):
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


# Stripes of two hours: (hour, outcome, category, {stripe: count}).
STRIPED_ROWS = [
    ("2026-01-01 10:00:00", "delivered", "", {0: 2, 3: 5, 7: 1}),
    ("2026-01-01 11:00:00", "failed", "landline", {4: 3, 9: 4}),
]


def test_stripe_downgrade_keeps_hourly_sums(scratch_app):
    upgrade()
    clinic_id = db.session.execute(
        text(
            "INSERT INTO clinics (name, provider, sender_number, country, fallback_enabled, mms_enabled,"
            " provider_handles_keywords, timezone) VALUES ('Clinic', 'twilio', '+15550100000', 'US', true, true,"
            " false, 'UTC') RETURNING id"
        )
    ).scalar()
    for hour, outcome, category, stripes in STRIPED_ROWS:
        for stripe, count in stripes.items():
            db.session.execute(
                text(
                    "INSERT INTO sms_hourly_stats (clinic_id, hour, outcome, category, stripe, count)"
                    " VALUES (:clinic_id, :hour, :outcome, :category, :stripe, :count)"
                ),
                {"clinic_id": clinic_id, "hour": hour, "outcome": outcome, "category": category, "stripe": stripe, "count": count},
            )
    db.session.commit()

    downgrade(revision="0009_fleet_stats")
    rows = db.session.execute(text("SELECT outcome, category, count FROM sms_hourly_stats ORDER BY outcome")).all()

    assert [tuple(row) for row in rows] == [("delivered", "", 8), ("failed", "landline", 7)]

"""`flask clinics set-timezone`: a clinic's time zone for its quiet hours and Pet Portal times."""

import pytest

from portal.extensions import db
from portal.models import Clinic


def set_timezone(app, *args):
    return app.test_cli_runner().invoke(args=["clinics", "set-timezone", *map(str, args)])


def stored_zone(clinic_id):
    db.session.rollback()
    return db.session.get(Clinic, clinic_id).timezone


def test_set_timezone_stored(app, factory):
    clinic = factory.clinic("twilio", name="Bayside Vets")

    result = set_timezone(app, clinic.id, "America/Los_Angeles")

    assert result.exit_code == 0
    assert "now uses America/Los_Angeles, in place of America/New_York" in result.output
    assert stored_zone(clinic.id) == "America/Los_Angeles"


@pytest.mark.parametrize("zone", ["Pacific Time", "America", "PST8PDT/x", ""])
def test_invalid_zone_rejected_unchanged(app, factory, zone):
    clinic = factory.clinic("twilio", name="Bayside Vets")

    result = set_timezone(app, clinic.id, zone)

    assert result.exit_code == 2
    assert f"{zone!r} is not an IANA time zone name" in result.output
    assert stored_zone(clinic.id) == "America/New_York"


def test_unknown_clinic_rejected(app):
    result = set_timezone(app, 999999, "America/Chicago")

    assert result.exit_code == 2
    assert "Clinic 999999 not found" in result.output

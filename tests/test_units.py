"""Unit tables for the pure helpers: error classification, pointer text, phones, refs, GSM-7."""

import re
import tomllib
from pathlib import Path

import pytest

from notifier.classify import CATEGORIES, categories, classify
from notifier.gsm import is_gsm7, septets, to_gsm7
from notifier.phone import InvalidPhoneNumber, mask, normalize
from notifier.pointer import MAX_SEPTETS, pointer_text
from notifier.status import format_ref, parse_ref

CODES_DIR = Path(__file__).resolve().parent.parent / "notifier" / "codes"
POINTER_URL = "https://pawpost.example.com/p/" + "x" * 32


def _table_rows(provider):
    data = tomllib.loads((CODES_DIR / f"{provider}.toml").read_text())
    return [(provider, str(code), entry["category"]) for code, entry in data["codes"].items()]


TABLE_ROWS = _table_rows("twilio") + _table_rows("bandwidth")


@pytest.mark.parametrize(("provider", "code", "category"), TABLE_ROWS)
def test_classify_table_code(provider, code, category):
    result = classify(provider, code)

    assert result.category == category
    assert result.mapped is True


@pytest.mark.parametrize(
    ("provider", "code", "category"),
    [
        ("twilio", "30007", "carrier_filtered"),
        ("twilio", "21610", "opted_out"),
        ("twilio", "30006", "landline"),
        ("twilio", "30005", "invalid_number"),
        ("twilio", "30004", "blocked"),
        ("twilio", "30003", "temporary"),
        ("twilio", "30034", "clinic_setup"),
        ("twilio", "30008", "unknown"),
        ("bandwidth", "4770", "carrier_filtered"),
        ("bandwidth", "4470", "carrier_filtered"),
        ("bandwidth", "4481", "clinic_setup"),
        ("bandwidth", "4775", "opted_out"),
        ("bandwidth", "4720", "landline"),
        ("bandwidth", "4750", "blocked"),
        ("bandwidth", "9902", "unknown"),
        ("bandwidth", "5100", "temporary"),
        ("bandwidth", "5150", "temporary"),
        ("bandwidth", "5231", "temporary"),
        ("bandwidth", "5625", "temporary"),
        ("bandwidth", "http-429", "temporary"),
        ("bandwidth", "http-401", "clinic_setup"),
    ],
)
def test_classify_known_code(provider, code, category):
    assert classify(provider, code).category == category


@pytest.mark.parametrize(
    ("provider", "code"),
    [
        ("twilio", "12345"),
        ("twilio", "30999"),
        ("bandwidth", "12345"),
        ("bandwidth", "4999"),
        ("bandwidth", "5232"),
        ("bandwidth", "5099"),
        ("bandwidth", "none"),
        ("bandwidth", ""),
    ],
)
def test_classify_unmapped_code(provider, code):
    result = classify(provider, code)

    assert result.category == "unknown"
    assert result.mapped is False


@pytest.mark.parametrize(("code", "expected"), [(30007, "30007"), (" 30007 ", "30007")])
def test_classify_code_form(code, expected):
    result = classify("twilio", code)

    assert result.code == expected
    assert result.category == "carrier_filtered"


def test_categories_cover_classifier():
    assert sorted(categories()) == sorted(CATEGORIES)


@pytest.mark.parametrize(
    "clinic_name",
    [
        "Zoë's Pets 🐾",
        "Happy Paws",
        "🐾🐾🐾",
        "Tierarztpraxis Müller & Söhne",
        "Clinique Vétérinaire “Les Amis”",
        "Line\nbreak\tclinic",
        "{Curly} [Brackets] ~ Clinic €",
        "A" * 200,
        "Zoë " * 60,
    ],
)
def test_pointer_text_single_gsm_segment(clinic_name):
    text = pointer_text(clinic_name, POINTER_URL)

    assert is_gsm7(text)
    assert septets(text) <= MAX_SEPTETS
    assert POINTER_URL in text


@pytest.mark.parametrize(
    ("clinic_name", "prefix"),
    [
        ("Zoë's Pets 🐾", "Zoe's Pets:"),
        ("🐾🐾🐾", "Your clinic:"),
        ("Line\nbreak\tclinic", "Line break clinic:"),
        ("  Happy   Paws  ", "Happy Paws:"),
    ],
)
def test_pointer_text_clinic_name(clinic_name, prefix):
    assert pointer_text(clinic_name, POINTER_URL).startswith(prefix)


def test_pointer_text_long_name_shortened():
    text = pointer_text("A" * 200, POINTER_URL)

    assert septets(text) == MAX_SEPTETS
    assert text.startswith("AAAA")
    assert text.endswith(POINTER_URL)


def test_pointer_text_long_url_raises():
    with pytest.raises(ValueError, match="too long"):
        pointer_text("Happy Paws", "https://pawpost.example.com/p/" + "x" * 150)


@pytest.mark.parametrize(
    ("raw", "country", "e164", "extension"),
    [
        ("+15551234501", "US", "+15551234501", None),
        ("(555) 123-4501", "US", "+15551234501", None),
        ("555.123.4501", "US", "+15551234501", None),
        ("5551234501", "US", "+15551234501", None),
        ("  +1 555 123 4501  ", "US", "+15551234501", None),
        ("555-123-4501 ext. 12", "US", "+15551234501", "12"),
        ("+1 555 123 4501 x9", "US", "+15551234501", "9"),
        ("020 7946 0958", "GB", "+442079460958", None),
        ("+442079460958", "US", "+442079460958", None),
    ],
)
def test_normalize_valid(raw, country, e164, extension):
    assert normalize(raw, country) == (e164, extension)


@pytest.mark.parametrize("raw", ["", "   ", None, "12", "hello", "+1555", "+1555123450199999"])
def test_normalize_invalid(raw):
    with pytest.raises(InvalidPhoneNumber):
        normalize(raw, "US")


@pytest.mark.parametrize("raw", ["12", "hello", "+1555"])
def test_normalize_error_names_value(raw):
    with pytest.raises(InvalidPhoneNumber, match=re.escape(repr(raw))):
        normalize(raw, "US")


@pytest.mark.parametrize(("e164", "masked"), [("+15551234501", "••••••••••01"), ("", ""), (None, "")])
def test_mask_phone(e164, masked):
    assert mask(e164) == masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.1", (12, 1)),
        ("1.0", (1, 0)),
        ("00012.003", (12, 3)),
        ("2147483647.2147483647", (2147483647, 2147483647)),
        ("2147483648.1", (None, None)),
        ("1.2147483648", (None, None)),
        ("12345678901.1", (None, None)),
        ("9" * 40 + ".1", (None, None)),
        ("", (None, None)),
        (None, (None, None)),
        ("12", (None, None)),
        ("1.2.3", (None, None)),
        (".1", (None, None)),
        ("1.", (None, None)),
        ("-1.2", (None, None)),
        (" 1.2", (None, None)),
        ("1 .2", (None, None)),
        ("a.b", (None, None)),
        ("１２.1", (None, None)),
        ("².1", (None, None)),
        ("1.٣", (None, None)),
    ],
)
def test_parse_ref(text, expected):
    assert parse_ref(text) == expected


def test_format_ref_round_trip():
    assert parse_ref(format_ref(42, 3)) == (42, 3)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 0),
        ("hello", 5),
        ("€", 2),
        ("{}", 4),
        ("a^b", 4),
        ("[~]|\\", 10),
        ("\f", 2),
        ("£ and ¥", 7),
        ("Price: 5€ {approx}", 21),
    ],
)
def test_septets(text, count):
    assert septets(text) == count


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Plain text @ 10£", True),
        ("Extension {} [] ~ | \\ ^ €", True),
        ("ΔΦΓΛΩΠΨΣΘΞ", True),
        ("Emoji 🐾", False),
        ("Curly “quotes”", False),
        ("Zoë", False),
        ("ç lower case cedilla", False),
    ],
)
def test_is_gsm7(text, expected):
    assert is_gsm7(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Zoë", "Zoe"),
        ("Café", "Café"),
        ("Pets 🐾", "Pets "),
        ("{curly}", "curly"),
        ("Łódź", "odz"),
    ],
)
def test_to_gsm7(text, expected):
    assert to_gsm7(text) == expected

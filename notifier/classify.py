"""Map provider error codes to Pawpost's failure categories.

The tables live in ``notifier/codes/*.toml`` so they can change without touching code; an
unmapped code falls back to the ``unknown`` category and is logged once per process.
"""

import logging
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

CODES_DIR = Path(__file__).parent / "codes"
CATEGORIES = (
    "carrier_filtered",
    "landline",
    "opted_out",
    "invalid_number",
    "blocked",
    "temporary",
    "clinic_setup",
    "unknown",
)
RETRY_RULES = ("no", "later", "once", "after_fix", "resend_sms")

_reported_unmapped = set()


@dataclass(frozen=True)
class Classification:
    provider: str
    code: str
    category: str
    retry: str
    meaning: str
    mapped: bool
    # A staff-facing reason that replaces the category's own, for codes that need other words.
    reason: str | None = None


@cache
def _table(provider):
    data = tomllib.loads((CODES_DIR / f"{provider}.toml").read_text())
    codes = {str(code): entry for code, entry in data["codes"].items()}
    for entry in list(codes.values()) + data.get("ranges", []):
        if entry["category"] not in CATEGORIES or entry["retry"] not in RETRY_RULES:
            raise ValueError(f"{provider}.toml has an invalid entry: {entry!r}")
    return codes, data.get("ranges", [])


@cache
def categories():
    """Return the staff-facing label, reason and action of every category."""
    return tomllib.loads((CODES_DIR / "categories.toml").read_text())


def classify(provider, code):
    """Return the category and retry rule of ``code`` from ``provider``."""
    code = str(code).strip()
    codes, ranges = _table(provider)
    entry = codes.get(code) or _in_range(ranges, code)
    if entry:
        return Classification(
            provider, code, entry["category"], entry["retry"], entry["meaning"], True, entry.get("reason")
        )

    if (provider, code) not in _reported_unmapped:
        _reported_unmapped.add((provider, code))
        log.warning(
            "Unmapped %s error code %s; add it to notifier/codes/%s.toml with its category.",
            provider, code, provider,
        )
    return Classification(provider, code, "unknown", "once", "Unmapped error code", False)


def _in_range(ranges, code):
    if not code.isdigit():
        return None
    number = int(code)
    return next((r for r in ranges if r["low"] <= number <= r["high"]), None)

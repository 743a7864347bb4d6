"""Match inbound replies against the opt-out, opt-in and help keywords."""

import re
import tomllib
import unicodedata
from functools import cache
from pathlib import Path


@cache
def _lists():
    return tomllib.loads((Path(__file__).parent / "codes" / "keywords.toml").read_text())


def normalize(body):
    """Return ``body`` upper-cased, with punctuation removed and runs of spaces made single."""
    kept = "".join(ch if not unicodedata.category(ch).startswith("P") else " " for ch in body or "")
    return " ".join(kept.upper().split())


def match(body):
    """Return ``opt_out``, ``opt_in``, ``help``, ``review`` or None for an inbound reply."""
    text = normalize(body)
    for kind in ("opt_out", "opt_in", "help"):
        if text in _lists()[kind]:
            return kind
    padded = f" {text} "
    if any(re.search(rf"\b{re.escape(word)}\b", padded) for word in _lists()["review"]):
        return "review"
    return None

"""The generated error-code page matches the tables it is built from."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_generator():
    spec = importlib.util.spec_from_file_location("error_codes_doc", ROOT / "scripts" / "error_codes_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_error_codes_page_is_current():
    generator = load_generator()

    assert (ROOT / "docs" / "error-codes.md").read_text() == generator.render()


def test_error_codes_page_lists_filter_codes():
    page = (ROOT / "docs" / "error-codes.md").read_text()

    assert "| 30007 | `carrier_filtered` |" in page
    assert "| 4770 | `carrier_filtered` |" in page

"""WSGI entry point: ``gunicorn wsgi:app``."""

from portal import create_app
from portal.logging import configure_logging

configure_logging()
app = create_app()

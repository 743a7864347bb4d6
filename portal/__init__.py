"""Pawpost web application: Pet Portal, staff admin, provider webhooks and the PIMS API."""

from flask import Flask
from werkzeug.routing import IntegerConverter

import config
from portal import sqlite  # noqa: F401  (registers the SQLite engine hooks)
from portal import pool
from portal.extensions import csrf, db, login_manager

# Row ids are PostgreSQL integers, so a larger number names no row.
MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    """Converter of the routes' ``int`` arguments, which are all row ids: above MAX_ID, no route matches (404).

    Without the bound PostgreSQL rejects the look-up with an error, and the request gets a 500.
    """

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)


def create_app(overrides=None):
    """Build the app: configuration, extensions, blueprints, error pages and CLI commands."""
    app = Flask(__name__, instance_relative_config=True)
    app.url_map.converters["int"] = IdConverter
    app.config.from_mapping(config.load(overrides))

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            pool.watch(db.engine)
    login_manager.init_app(app)
    csrf.init_app(app)

    from portal import admin, api, auth, commands, errors, inputs, migrate, ops, petportal, security, webhooks

    security.init_app(app)
    inputs.init_app(app)
    app.session_interface = webhooks.BrowserSessionInterface()
    auth.init_app(app)
    for blueprint in (petportal.bp, admin.bp, webhooks.bp, api.bp, ops.bp):
        app.register_blueprint(blueprint)
    errors.init_app(app)
    commands.init_app(app)
    migrate.init_app(app)
    return app

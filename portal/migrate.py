"""The ``flask db`` commands of Flask-Migrate, with Alembic imported only when one runs.

Flask-Migrate and Alembic add about 12 MB of RSS (measured on Python 3.11), and web and worker
processes never migrate, so the factory registers this stand-in group instead of the extension.
"""

import os

import click

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")


def init_app(app):
    """Register ``flask db`` on ``app`` without importing Flask-Migrate."""
    app.cli.add_command(DeferredMigrateGroup(app))


def bind(app):
    """Attach Flask-Migrate to ``app``, once.

    ``flask db`` does this itself. Code that calls Flask-Migrate's functions in-process, such as
    ``flask_migrate.upgrade()``, calls this first.
    """
    if "migrate" in app.extensions:
        return
    from flask_migrate import Migrate

    from portal.extensions import db

    # Migrate.init_app also puts Flask-Migrate's own ``db`` group on app.cli in place of ours.
    Migrate(app, db, directory=MIGRATIONS_DIR)


class DeferredMigrateGroup(click.Group):
    """Flask-Migrate's ``db`` group, imported when the command line parses, lists or runs it.

    Parsing goes to Flask-Migrate's group, so its options (``--directory``, ``--x-arg``), help
    and subcommands are the ones it defines.
    """

    def __init__(self, app):
        super().__init__("db", help="Perform database migrations.")
        self.app = app

    def make_context(self, info_name, args, parent=None, **extra):
        return self._real_group().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        return self._real_group().invoke(ctx)

    def list_commands(self, ctx):
        return self._real_group().list_commands(ctx)

    def get_command(self, ctx, name):
        return self._real_group().get_command(ctx, name)

    def _real_group(self):
        bind(self.app)
        from flask_migrate.cli import db

        return db

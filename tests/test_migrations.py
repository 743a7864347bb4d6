"""The migrations build the schema the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portal.extensions import db


def test_migrated_schema_matches_models(app):
    # The live fixture built the tables by running every migration, not from the models.
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)

    assert differences == []

"""Create fastsession's tables (fastsession.postgres_admin.create_sql) on the sessions' database only."""

from typing import Any, ClassVar

from django.db import migrations

from fastsession.postgres_admin import create_sql, drop_sql


def _on_sessions_database(schema_editor: Any) -> bool:
    from fastsession.contrib._django_postgres import database_alias

    connection = schema_editor.connection
    return bool(connection.vendor == "postgresql" and connection.alias == database_alias())


def create(apps: Any, schema_editor: Any) -> None:
    from fastsession.contrib._django_postgres import table_name

    if _on_sessions_database(schema_editor):
        for statement in create_sql(table_name()):
            schema_editor.execute(statement)


def drop(apps: Any, schema_editor: Any) -> None:
    from fastsession.contrib._django_postgres import table_name

    if _on_sessions_database(schema_editor):
        for statement in drop_sql(table_name()):
            schema_editor.execute(statement)


class Migration(migrations.Migration):  # type: ignore[misc]
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []
    operations: ClassVar[list[Any]] = [migrations.RunPython(create, drop, elidable=False)]

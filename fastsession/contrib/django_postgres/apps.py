from django.apps import AppConfig


class FastSessionPostgresConfig(AppConfig):  # type: ignore[misc]  # (Django has no stubs here)
    name = "fastsession.contrib.django_postgres"
    label = "fastsession_postgres"
    verbose_name = "fastsession on PostgreSQL"

"""The Django app whose migration creates fastsession's PostgreSQL tables.

``INSTALLED_APPS += ["fastsession.contrib.django_postgres"]`` with
``FASTSESSION_BACKEND = "postgres"``; ``manage.py migrate`` then creates the
session table (``FASTSESSION_POSTGRES_TABLE``, default ``fastsession_session``)
and its user index on the database ``FASTSESSION_DATABASE`` ("default").
"""

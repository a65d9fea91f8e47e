"""Django's own session test classes, pointed at fastsession.contrib.django (see run.py)."""

import shutil
import tempfile

from django.test import SimpleTestCase, override_settings
from sessions_tests import tests as django_tests

from fastsession.contrib.django import SessionStore


class FastSessionTests(django_tests.SessionTestsMixin, SimpleTestCase):
    backend = SessionStore

    def setUp(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        isolated = override_settings(SESSION_FILE_PATH=directory)
        isolated.enable()
        self.addCleanup(isolated.disable)
        super().setUp()


class FastSessionMiddlewareTests(django_tests.SessionMiddlewareTests):
    # Reads django.contrib.sessions' database model, which this engine does not use.
    test_empty_session_saved = None

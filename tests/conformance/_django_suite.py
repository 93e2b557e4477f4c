"""Django's session tests, bound to gatekeep's engine: the classes Django runs for each
of its own engines (``SessionTestsMixin`` over one store, ``SessionMiddlewareTests``
through ``settings.SESSION_ENGINE``), each with ``USE_TZ`` False and True, as Django
does for its database engine.

Imported only in the subprocess, where ``sessions_tests`` (from Django's sdist) is on
the path.
"""

from django.test import SimpleTestCase, override_settings
from sessions_tests import tests as django_tests

from gatekeep.django.sessions import SessionStore


class GatekeepSessionTests(django_tests.SessionTestsMixin, SimpleTestCase):
    backend = SessionStore


@override_settings(USE_TZ=True)
class GatekeepSessionWithTimeZoneTests(GatekeepSessionTests):
    pass


class GatekeepSessionMiddlewareTests(django_tests.SessionMiddlewareTests):
    pass


@override_settings(USE_TZ=True)
class GatekeepSessionMiddlewareWithTimeZoneTests(django_tests.SessionMiddlewareTests):
    pass

"""Settings for Django's own ``tests/sessions_tests`` run against gatekeep's session
engine (in a subprocess started by ``test_django_sessions.py``).

The store is in-process unless ``GATEKEEP_CONFORMANCE_REDIS`` names a server.
"""

import os

SECRET_KEY = "gatekeep-conformance"
USE_TZ = False  # the suite runs each class again with USE_TZ=True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "sessions_tests",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_ENGINE = "gatekeep.django.sessions"

_sessions = {"prefix": os.environ.get("GATEKEEP_CONFORMANCE_PREFIX", "conformance")}
if os.environ.get("GATEKEEP_CONFORMANCE_REDIS"):
    _sessions["url"] = os.environ["GATEKEEP_CONFORMANCE_REDIS"]
GATEKEEP = {"sessions": _sessions}

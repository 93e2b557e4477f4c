"""One Django configuration for every Django test module in this process (settings can
be configured once): each module sets its own ``ROOT_URLCONF`` with ``override_settings``.

The database is SQLite in memory, shared by every thread of the process (Django's
async test client runs sync code in a worker thread), migrated once.
"""

from __future__ import annotations

import django
from django.conf import settings

DATABASE = "file:gatekeep-tests?mode=memory&cache=shared"


def configure() -> None:
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="test_django",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "gatekeep.django"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATABASE}},
        MIDDLEWARE=[],
        USE_TZ=True,
        # fast hashing: these tests are about sessions, not passwords
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    django.setup()


_migrated = False


def migrate() -> None:
    global _migrated
    if not _migrated:
        from django.core.management import call_command

        call_command("migrate", run_syncdb=True, verbosity=0)
        _migrated = True

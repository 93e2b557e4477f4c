"""A one-file Django project with gatekeep's rate-limit middleware and session engine.

Run:  python examples/django_app.py         (then: curl -i http://127.0.0.1:8000/)
      python examples/django_app.py check   (any manage.py command: system checks...)

- every view: 5 requests per minute per client (the default, from settings.GATEKEEP);
- POST /login/: 2 per minute (a rule in settings);  /health/: never limited (@ratelimit_exempt);
- /search/: 3 per minute (@ratelimit on the view);
- GET /counter/ and POST /logout/: 60 per minute together (a rule);
- sessions (SESSION_ENGINE = "gatekeep.django.sessions") with django.contrib.auth and a
  real User (alice / wonderland, in an in-memory SQLite database made at start-up):
  POST /login/ with {"username": "alice", "password": "wonderland"} logs in (auth's
  login() rotates the session key), GET /counter/ counts in the session, POST /logout/
  (auth's logout()) destroys it.

The views are a JSON API without CsrfViewMiddleware, to stay short; an app with HTML
forms keeps it.
"""

from __future__ import annotations

import json
import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

import django
from _common import HOST, PORT, SECRET_KEY, USERS, backend, key
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    SECRET_KEY=SECRET_KEY,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "gatekeep.django"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "gatekeep.django.middleware.RateLimitMiddleware",
    ],
    SESSION_ENGINE="gatekeep.django.sessions",
    USE_TZ=True,
    GATEKEEP={
        "ratelimit": {
            "default": "5/minute",
            "rules": [
                {"limits": "2/minute", "path": "POST /login/", "name": "login"},
                {
                    "limits": "60/minute",
                    "path": ["GET /counter/", "POST /logout/"],
                    "name": "session",
                },
            ],
            "key": key(),
            "backend": backend(),
        },
        "sessions": {  # no url: in-process (one process only)
            "url": os.environ.get("GATEKEEP_REDIS_URL"),
            "prefix": "examples",
            "idle_timeout": 30 * 60,
            "absolute_timeout": 8 * 3600,
        },
    },
)
django.setup()

from django.contrib.auth import authenticate, login, logout  # noqa: E402

from gatekeep.django.decorators import ratelimit, ratelimit_exempt  # noqa: E402


def home(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hello": "django"})


def login_view(request: HttpRequest) -> JsonResponse:
    try:
        credentials = json.loads(request.body or b"null")
    except ValueError:
        credentials = None
    user = None
    if isinstance(credentials, dict):
        user = authenticate(
            request, username=credentials.get("username"), password=credentials.get("password")
        )
    if user is None:
        return JsonResponse({"error": "bad credentials"}, status=401)
    login(request, user)  # cycle_key(): a new session key
    return JsonResponse({"user": user.get_username()})


def counter(request: HttpRequest) -> JsonResponse:
    request.session["count"] = request.session.get("count", 0) + 1
    user = request.user.get_username() if request.user.is_authenticated else None
    return JsonResponse({"count": request.session["count"], "user": user})


def logout_view(request: HttpRequest) -> JsonResponse:
    logout(request)  # flush(): the session is deleted
    return JsonResponse({"ok": True})


@ratelimit("3/minute", name="search")
def search(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"results": []})


@ratelimit_exempt
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("", home),
    path("login/", login_view),
    path("counter/", counter),
    path("logout/", logout_view),
    path("search/", search),
    path("health/", health),
]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def create_users() -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    for name, password in USERS.items():
        User.objects.create_user(name, password=password)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    else:
        from django.core.management import call_command
        from django.core.wsgi import get_wsgi_application

        call_command("check")  # system checks at start-up, as runserver does
        create_users()
        with make_server(HOST, PORT, get_wsgi_application(), handler_class=QuietHandler) as server:
            server.serve_forever()

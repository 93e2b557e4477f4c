"""A one-file Django project with gatekeep's rate-limit middleware.

Run:  python examples/django_app.py         (then: curl -i http://127.0.0.1:8000/)
      python examples/django_app.py check   (any manage.py command: system checks...)

- every view: 5 requests per minute per client (the default, from settings.GATEKEEP);
- POST /login/: 2 per minute (a rule in settings);  /health/: never limited (@ratelimit_exempt);
- /search/: 3 per minute (@ratelimit on the view).
"""

from __future__ import annotations

import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

import django
from _common import HOST, PORT, backend, key
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False, SECRET_KEY=os.environ.get("SECRET_KEY", "example-only"), ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["gatekeep.django"],
    MIDDLEWARE=["gatekeep.django.middleware.RateLimitMiddleware"],
    GATEKEEP={"ratelimit": {
        "default": "5/minute",
        "rules": [{"limits": "2/minute", "path": "POST /login/", "name": "login"}],
        "key": key(), "backend": backend(),
    }},
)
django.setup()

from gatekeep.django.decorators import ratelimit, ratelimit_exempt  # noqa: E402


def home(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hello": "django"})


def login(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"logged_in": True})


@ratelimit("3/minute", name="search")
def search(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"results": []})


@ratelimit_exempt
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [path("", home), path("login/", login), path("search/", search),
               path("health/", health)]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    if len(sys.argv) > 1:
        from django.core.management import execute_from_command_line
        execute_from_command_line(sys.argv)
    else:
        from django.core.management import call_command
        from django.core.wsgi import get_wsgi_application

        call_command("check")  # system checks at start-up, as runserver does
        with make_server(HOST, PORT, get_wsgi_application(),
                         handler_class=QuietHandler) as server:
            server.serve_forever()

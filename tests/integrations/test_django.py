"""Django: the middleware in sync and async stacks, decorators, settings and checks."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

from gatekeep.django.conf import build_policy
from gatekeep.django.decorators import ratelimit, ratelimit_exempt
from gatekeep.django.middleware import RateLimitMiddleware
from gatekeep.ratelimit import Denial, Rule

MW = "gatekeep.django.middleware.RateLimitMiddleware"


@pytest.fixture(autouse=True)
def _urls() -> Any:
    with override_settings(ROOT_URLCONF=__name__):
        yield


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("home")


@ratelimit("1/minute", name="login")
def login(request: HttpRequest) -> HttpResponse:
    return HttpResponse("in")


@ratelimit_exempt
def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


async def aview(request: HttpRequest) -> HttpResponse:
    return HttpResponse("async")


def tokens(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", headers={"X-Tokens-Used": "6"})


def streamed(request: HttpRequest) -> HttpResponse:
    from django.http import StreamingHttpResponse

    return StreamingHttpResponse(iter([b"a", b"b"]), headers={"X-Tokens-Used": "3"})


urlpatterns = [
    path("tokens/", tokens),
    path("streamed/", streamed),
    path("", index),
    path("login/", login),
    path("health/", health),
    path("api/items/", index),
    path("async/", aview),
]


def conf(backend: Any = None, prefix: str = "", **extra: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "default": "3/minute",
        "backend": backend,
        "prefix": prefix,
        "exempt": ["/static/**"],
        "rules": [{"limits": "2/minute", "path": "/api/**", "name": "api"}],
    }
    section.update(extra)
    return {"ratelimit": section}


def test_sync_stack(backend: Any, prefix: str) -> None:
    with override_settings(MIDDLEWARE=[MW], GATEKEEP=conf(backend, prefix)):
        c = Client()
        assert [c.get("/").status_code for _ in range(4)] == [200, 200, 200, 429]
        r = c.get("/")
        assert r["RateLimit-Policy"] == '"default";q=3;w=60'
        assert r.json()["error"] == "rate_limited" and int(r["Retry-After"]) >= 1
        assert [c.get("/login/").status_code for _ in range(2)] == [200, 429]
        r = c.get("/health/")
        assert r.status_code == 200 and not r.has_header("RateLimit")
        r = c.get("/api/items/")
        assert r["RateLimit"].startswith('"api";r=1;')


async def test_async_stack(abackend: Any, prefix: str) -> None:
    with override_settings(MIDDLEWARE=[MW], GATEKEEP=conf(abackend, prefix)):
        c = AsyncClient()
        statuses = [(await c.get("/async/")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        r = await c.get("/login/")
        assert r.status_code == 200 and r["RateLimit-Policy"] == '"login";q=1;w=60'
        assert (await c.get("/login/")).status_code == 429
        assert (await c.get("/health/")).status_code == 200


SETTLE = [
    {"limits": "10/minute", "path": "/tokens/", "name": "llm", "settle": "x-tokens-used"},
    {"limits": "10/minute", "path": "/streamed/", "name": "s", "settle": "x-tokens-used"},
]


def test_settle_rule_sync_stack() -> None:
    with override_settings(MIDDLEWARE=[MW], GATEKEEP=conf(rules=SETTLE)):
        c = Client()
        assert c.get("/tokens/")["RateLimit"].startswith('"llm";r=9;')
        assert c.get("/tokens/")["RateLimit"].startswith('"llm";r=3;')  # 6 used, then 1
        r = c.get("/streamed/")
        assert r["RateLimit"].startswith('"s";r=9;')
        assert b"".join(r.streaming_content) == b"ab"  # the settlement after the last chunk
        assert c.get("/streamed/")["RateLimit"].startswith('"s";r=6;')


async def test_settle_rule_async_stack() -> None:
    with override_settings(MIDDLEWARE=[MW], GATEKEEP=conf(rules=SETTLE)):
        c = AsyncClient()
        assert (await c.get("/tokens/"))["RateLimit"].startswith('"llm";r=9;')
        assert (await c.get("/tokens/"))["RateLimit"].startswith('"llm";r=3;')


def test_middleware_modes() -> None:
    async def aget(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    from asgiref.sync import iscoroutinefunction

    policy = build_policy({"default": "1/second"})
    assert iscoroutinefunction(RateLimitMiddleware(aget, policy))
    sync_mw = RateLimitMiddleware(lambda r: HttpResponse(), policy)
    assert not iscoroutinefunction(sync_mw)
    assert RateLimitMiddleware.sync_capable and RateLimitMiddleware.async_capable


def test_custom_deny_and_shadow() -> None:
    def deny(request: Any, decision: Any) -> JsonResponse:
        return JsonResponse({"slow": True}, status=429)

    with override_settings(MIDDLEWARE=[MW], GATEKEEP=conf(default="1/minute", deny=deny)):
        c = Client()
        c.get("/")
        r = c.get("/")
        assert r.status_code == 429 and r.json() == {"slow": True} and r.has_header("Retry-After")
    with override_settings(MIDDLEWARE=[MW], GATEKEEP=conf(default="1/minute", shadow=True)):
        c = Client()
        assert [c.get("/").status_code for _ in range(3)] == [200, 200, 200]


def test_settings_forms() -> None:
    policy = build_policy(
        {
            "trusted_proxies": ["10.0.0.0/8"],
            "default": "5/second",
            "rules": [
                Rule("1/second", "/x", name="x"),
                {
                    "limits": "2/second",
                    "path": "POST /y",
                    "key": "gatekeep.ratelimit.keys.client_ip",
                },
            ],
            "deny": "gatekeep.ratelimit.Denial",
        }
    )
    assert [r.name for r in policy.rules] == ["x", "POST /y"]
    assert policy.deny is Denial
    for bad, message in [
        ({"default": "often"}, "Malformed rate"),
        ({"rules": ["/x"]}, "each rule"),
        ({"key": "no.such.module"}, "cannot import"),
        ({"trusted_proxies": ["nope"]}, "trusted proxy"),
        ({"trusted_proxies": [], "key": "gatekeep.ratelimit.user"}, "not both"),
    ]:
        with pytest.raises(ImproperlyConfigured, match=message):
            build_policy(bad)


def test_system_checks() -> None:
    with override_settings(MIDDLEWARE=[MW], GATEKEEP={"ratelimit": {"default": "often"}}):
        assert [m.id for m in run_checks()] == ["gatekeep.E001"]
    with override_settings(MIDDLEWARE=[], GATEKEEP=conf()):
        assert [m.id for m in run_checks()] == ["gatekeep.W001"]
    # a dotted class name means its instance: user() keys on the user
    with override_settings(MIDDLEWARE=[MW], GATEKEEP=conf(key="gatekeep.ratelimit.user")):
        assert [m.id for m in run_checks()] == ["gatekeep.E002"]
    auth = "django.contrib.auth.middleware.AuthenticationMiddleware"
    sessions = "django.contrib.sessions.middleware.SessionMiddleware"
    with override_settings(
        MIDDLEWARE=[sessions, auth, MW], GATEKEEP=conf(key="gatekeep.ratelimit.user")
    ):
        assert [m.id for m in run_checks() if m.id.startswith("gatekeep")] == []
    with override_settings(MIDDLEWARE=[MW], GATEKEEP="nope"):
        assert [m.id for m in run_checks()] == ["gatekeep.E001"]
    with override_settings(MIDDLEWARE=[MW], GATEKEEP=conf()):
        assert run_checks() == []

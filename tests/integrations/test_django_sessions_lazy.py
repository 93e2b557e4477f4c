"""The Django session engine through Django's SessionMiddleware: a request that never
touches ``request.session`` costs no round trip and leaves the session's TTL alone
(counted by the server, INFO commandstats, on a private Redis); an emptied session is
still saved and keeps its cookie (Django's ``test_empty_session_saved`` without its
database lookup)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.urls import path

from gatekeep import RedisBackend
from gatekeep.django import sessions as engine
from gatekeep.sessions import SessionStore as GatekeepStore

ENGINE = "gatekeep.django.sessions"
COOKIE = "sessionid"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


def write(request: HttpRequest) -> JsonResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return JsonResponse({"n": request.session["n"]})


def read(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"n": request.session.get("n")})


def untouched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no session here")


async def auntouched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no session here")


urlpatterns = [
    path("write/", write),
    path("read/", read),
    path("untouched/", untouched),
    path("auntouched/", auntouched),
]


def commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far, INFO itself left out."""
    stats = client.info("commandstats")
    return {
        name[len("cmdstat_") :]: value["calls"]
        for name, value in stats.items()
        if name != "cmdstat_info"
    }


def sent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


@pytest.fixture
def private(server_factory: Any, prefix: str) -> Iterator[tuple[GatekeepStore, redis.Redis]]:
    """The engine on a Redis of its own, so every command the server counts is ours."""
    server = server_factory("redis")
    backend = RedisBackend(server.url)
    gk = GatekeepStore(backend, prefix=prefix, idle_timeout=3600, absolute_timeout=7200)
    probe = redis.Redis(port=server.port)
    with override_settings(
        ROOT_URLCONF=__name__,
        SESSION_ENGINE=ENGINE,
        MIDDLEWARE=MIDDLEWARE,
        GATEKEEP={"sessions": {"store": gk}},
    ):
        yield gk, probe
    probe.close()
    backend.close()


@pytest.mark.redis
def test_untouched_session_costs_nothing(private: tuple[GatekeepStore, redis.Redis]) -> None:
    gk, probe = private
    c = Client()
    assert c.get("/write/").json() == {"n": 1}
    key = c.cookies[COOKIE].value
    redis_key = gk.key(key)

    # the counter sees a read: the peek, TIME and HGETALL in one round trip, no script
    c.get("/read/")
    before = commands(probe)
    assert c.get("/read/").json() == {"n": 1}
    assert sent(before, commands(probe)) == {"time": 1, "hgetall": 1}

    ttl = int(probe.pttl(redis_key))
    time.sleep(0.3)
    before = commands(probe)
    for _ in range(3):
        r = c.get("/untouched/")
        assert r.status_code == 200 and COOKIE not in r.cookies
        assert "Cookie" not in r.get("Vary", "")
    assert sent(before, commands(probe)) == {}
    later = int(probe.pttl(redis_key))
    assert later <= ttl - 250, (ttl, later)  # still running down: not extended


@pytest.mark.redis
async def test_untouched_session_costs_nothing_async(
    private: tuple[GatekeepStore, redis.Redis],
) -> None:
    gk, probe = private
    c = AsyncClient()
    try:
        r = await c.get("/write/")
        key = c.cookies[COOKIE].value
        assert r.json() == {"n": 1}
        ttl = int(probe.pttl(gk.key(key)))
        await asyncio.sleep(0.3)
        before = commands(probe)
        r = await c.get("/auntouched/")
        assert r.status_code == 200 and COOKIE not in r.cookies
        assert sent(before, commands(probe)) == {}
        assert int(probe.pttl(gk.key(key))) <= ttl - 250
    finally:
        await gk.aclose()


def test_emptied_session_is_saved(prefix: str) -> None:
    """Django's test_empty_session_saved, the store read through the engine instead of
    Django's Session model."""
    gk = GatekeepStore(None, prefix=prefix)
    with override_settings(SESSION_ENGINE=ENGINE, GATEKEEP={"sessions": {"store": gk}}):

        def view(request: HttpRequest) -> HttpResponse:
            request.session["foo"] = "bar"
            return HttpResponse("set")

        request = RequestFactory().get("/")
        middleware = SessionMiddleware(view)
        response = middleware(request)
        key = request.session.session_key
        assert f"Set-Cookie: sessionid={key}" in str(response.cookies)
        assert dict(engine.SessionStore(key).items()) == {"foo": "bar"}

        del request.session["foo"]
        response = middleware.process_response(request, HttpResponse("emptied"))
        assert request.session.session_key == key
        stored = engine.SessionStore(key)
        assert stored.load() == {} and stored.exists(key)
        assert f"Set-Cookie: sessionid={key}" in str(response.cookies)
        assert response.headers["Vary"] == "Cookie"

"""``Rule(..., concurrency=N)`` behind Flask and Django: the slot is held until the
response is closed (a streamed body sent), then released."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.test import RequestFactory
from flask import Flask, Response

from gatekeep.django.middleware import RateLimitMiddleware
from gatekeep.flask import RateLimiter
from gatekeep.ratelimit import RateLimitPolicy, Rule


def _policy(prefix: str) -> RateLimitPolicy:
    return RateLimitPolicy(
        rules=[Rule(None, "/**", concurrency=1, name="export")], prefix=prefix, metrics=None
    )


def test_flask_releases_the_slot_when_the_response_closes(prefix):
    app = Flask(__name__)
    RateLimiter(app, policy=_policy(prefix))

    @app.get("/")
    def index() -> Any:
        return Response(iter([b"a", b"b"]))

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("boom")

    client = app.test_client()
    first = client.get("/")
    assert first.status_code == 200
    assert first.headers["RateLimit"] == '"export";r=0'
    assert client.get("/").status_code == 429
    first.close()
    with client.get("/") as again:
        assert again.status_code == 200
    app.testing = True  # the error propagates: no response; released by the teardown
    with pytest.raises(RuntimeError):
        client.get("/boom")
    with client.get("/") as after:
        assert after.status_code == 200


def test_django_streaming_response_holds_the_slot_until_closed(prefix):
    streaming = True

    def get_response(request: Any) -> Any:
        return StreamingHttpResponse(iter([b"a"])) if streaming else HttpResponse("x")

    middleware = RateLimitMiddleware(get_response, policy=_policy(prefix))
    factory = RequestFactory()
    first = middleware(factory.get("/"))
    assert first.status_code == 200
    assert middleware(factory.get("/")).status_code == 429
    first.close()
    streaming = False
    assert middleware(factory.get("/")).status_code == 200  # released as it returned
    assert middleware(factory.get("/")).status_code == 200


async def test_django_async_streaming_response_holds_the_slot_until_closed(prefix):
    from asgiref.sync import sync_to_async

    async def chunks() -> Any:
        yield b"a"

    async def get_response(request: Any) -> Any:
        return StreamingHttpResponse(chunks())

    middleware = RateLimitMiddleware(get_response, policy=_policy(prefix))
    factory = RequestFactory()
    first = await middleware(factory.get("/"))
    assert first.status_code == 200
    assert (await middleware(factory.get("/"))).status_code == 429
    await sync_to_async(first.close)()  # as Django's ASGI handler closes it
    again = await middleware(factory.get("/"))
    assert again.status_code == 200
    await sync_to_async(again.close)()
    assert middleware.policy.leases.held_now == 0

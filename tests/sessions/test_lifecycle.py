"""What a request costs and what it extends; the cookie's lifetime, key rotation, and
sessions too large to store: ASGI and WSGI, on each store (real servers included)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import pytest
from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from gatekeep.sessions import SessionStore, SessionTooLarge
from gatekeep.sessions.asgi import SessionMiddleware
from gatekeep.sessions.wsgi import SessionMiddleware as WSGISessionMiddleware

from .helpers import asgi_call, wsgi_call

SECRET = "test-secret-key"


def cookie(sid: str, *, age: float = 0, key: str = SECRET) -> str:
    """``session=<sid signed with key, age seconds ago>``."""
    signer = TimestampSigner(key.encode(), salt="gatekeep.session", digest_method=hashlib.sha256)
    signer.get_timestamp = lambda: int(time.time() - age)  # type: ignore[method-assign]
    return f"session={signer.sign(sid).decode()}"


def seen_ago(store: SessionStore, sid: str) -> float:
    meta = store.meta(sid)
    assert meta is not None
    return time.time() - meta.last_seen_at.timestamp()


def count_batches(store: SessionStore) -> list[int]:
    """Counts the store's round trips (the executor object itself stays as it is)."""
    n = [0]
    executor = store.executor
    run, arun = executor.run, executor.arun

    def counted(calls: Any, now: Any) -> Any:
        n[0] += 1
        return run(calls, now)

    def acounted(calls: Any, now: Any) -> Any:
        n[0] += 1
        return arun(calls, now)

    executor.run, executor.arun = counted, acounted  # type: ignore[method-assign]
    return n


async def show(request: Request) -> JSONResponse:
    return JSONResponse({"session": request.session})


async def nothing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def big(request: Request) -> PlainTextResponse:
    try:
        request.session["big"] = "x" * 2000
    except SessionTooLarge:
        return PlainTextResponse("too large")
    return PlainTextResponse("stored")


async def grow(request: Request) -> PlainTextResponse:
    request.session.setdefault("list", []).append("x" * 2000)  # in place: not seen here
    return PlainTextResponse("grown")


def asgi(store: SessionStore, **options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", show),
            Route("/nothing", nothing),
            Route("/big", big),
            Route("/grow", grow),
        ]
    )
    options.setdefault("secret_key", SECRET)
    app.add_middleware(SessionMiddleware, store=store, **options)
    return app


def wsgi(store: SessionStore, **options: Any) -> WSGISessionMiddleware:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session, path = environ["gatekeep.session"], environ["PATH_INFO"]
        body = b"ok"
        if path == "/":
            body = json.dumps({"session": session}).encode()
        elif path == "/big":
            try:
                session["big"] = "x" * 2000
            except SessionTooLarge:
                body = b"too large"
        elif path == "/grow":
            session.setdefault("list", []).append("x" * 2000)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    options.setdefault("secret_key", SECRET)
    return WSGISessionMiddleware(app, store=store, **options)


def is_redis(store: SessionStore) -> bool:
    return type(store.executor).__name__ != "MemoryExecutor"


# -- a request that never touches its session ------------------------------------------


@pytest.mark.parametrize("lazy", [False, True])
async def test_asgi_untouched_session_is_not_extended(store, lazy):
    sid = store.create({"n": 1}, now=time.time() - 50).id
    app = asgi(store, lazy=lazy)
    batches = count_batches(store)
    r = await asgi_call(app, "/nothing", cookie(sid))
    assert r.set_cookies == [] and r.header("vary") is None
    # No round trip, but for Redis without lazy=True: a read (without touch) before the
    # app, as a sync `request.session[...]` cannot await one.
    assert batches[0] == (1 if is_redis(store) and not lazy else 0)
    assert seen_ago(store, sid) > 45  # the idle deadline stayed


@pytest.mark.parametrize("lazy", [True, False])
def test_wsgi_untouched_session_is_not_extended(store, lazy):
    sid = store.create({"n": 1}, now=time.time() - 50).id
    app = wsgi(store, lazy=lazy)
    batches = count_batches(store)
    r = wsgi_call(app, "/nothing", cookie(sid))
    assert r.set_cookies == [] and r.header("vary") is None
    assert batches[0] == (0 if lazy else 1)
    assert seen_ago(store, sid) > 45


async def test_asgi_a_read_extends_the_session(store):
    sid = store.create({"n": 1}, now=time.time() - 50).id
    app = asgi(store)
    batches = count_batches(store)
    r = await asgi_call(app, "/", cookie(sid))
    assert json.loads(r.body) == {"session": {"n": 1}} and r.header("vary") == "Cookie"
    # In-process: loaded (and touched) on first use. Redis: read, then touched with the
    # response, as more than a tenth of the idle timeout (100 s) had passed.
    assert batches[0] == (2 if is_redis(store) else 1)
    assert seen_ago(store, sid) < 5  # moved to now
    batches[0] = 0
    await asgi_call(app, "/", cookie(sid))
    assert batches[0] == 1  # fresh: no touch again


def test_wsgi_a_read_extends_the_session(store):
    sid = store.create({"n": 1}, now=time.time() - 50).id
    app = wsgi(store)
    batches = count_batches(store)
    r = wsgi_call(app, "/", cookie(sid))
    assert json.loads(r.body) == {"session": {"n": 1}}
    # read on first use, then touched with the response, as more than a tenth of the
    # idle timeout (100 s) had passed (as ASGI's)
    assert batches[0] == 2 and seen_ago(store, sid) < 5
    batches[0] = 0
    wsgi_call(app, "/", cookie(sid))
    assert batches[0] == 1  # fresh: the read alone


# -- the cookie: Max-Age, refresh, rotation -----------------------------------------------


@pytest.mark.parametrize("front", ["asgi", "wsgi"])
async def test_a_stale_cookie_is_sent_again_on_a_read(store, front):
    sid = store.create({"n": 1}).id

    async def call(path: str, value: str) -> Any:
        if front == "asgi":
            return await asgi_call(asgi(store), path, value)
        return wsgi_call(wsgi(store), path, value)

    assert (await call("/", cookie(sid, age=5))).set_cookies == []  # < 10 s of 100
    assert (await call("/nothing", cookie(sid, age=20))).set_cookies == []  # not used
    (again,) = (await call("/", cookie(sid, age=20))).set_cookies
    assert again.startswith(f"session={sid}.") and "; Max-Age=100;" in again
    fresh = again.split(";", 1)[0]
    assert fresh != cookie(sid, age=20)
    assert (await call("/", fresh)).set_cookies == []  # signed now
    # Older than max_age, its session alive (a cookie from before rolling cookies):
    # accepted, and sent again; older than the absolute lifetime (1000 s): refused.
    r = await call("/", cookie(sid, age=101))
    assert json.loads(r.body) == {"session": {"n": 1}} and len(r.set_cookies) == 1
    assert json.loads((await call("/", cookie(sid, age=1001))).body) == {"session": {}}


@pytest.mark.parametrize("front", ["asgi", "wsgi"])
async def test_a_cookie_signed_with_an_old_key_is_signed_again_with_the_first(store, front):
    sid = store.create({"n": 1}).id
    keys = ["new", "old"]

    async def call(value: str, secret: Any) -> Any:
        if front == "asgi":
            return await asgi_call(asgi(store, secret_key=secret), "/", value)
        return wsgi_call(wsgi(store, secret_key=secret), "/", value)

    r = await call(cookie(sid, key="old"), keys)
    assert json.loads(r.body) == {"session": {"n": 1}}
    (resigned,) = r.set_cookies
    value = resigned.split(";", 1)[0]
    r = await call(value, "new")  # the old key retired
    assert json.loads(r.body) == {"session": {"n": 1}} and r.set_cookies == []
    assert (await call(cookie(sid, key="new"), keys)).set_cookies == []


@pytest.mark.parametrize(
    "max_age, attribute", [(None, None), (0, "Max-Age=0"), (-1, "Max-Age=-1"), (60, "Max-Age=60")]
)
async def test_max_age_as_starlette_means_it(max_age, attribute):
    app = Starlette(routes=[Route("/", show), Route("/big", big)])
    app.add_middleware(SessionMiddleware, secret_key=SECRET, max_age=max_age, partitioned=True)
    (set_cookie,) = (await asgi_call(app, "/big")).set_cookies
    assert ("Max-Age" in set_cookie) is (attribute is not None)
    if attribute:
        assert f"; {attribute};" in set_cookie
    assert set_cookie.endswith("; httponly; samesite=lax; secure; partitioned")
    r = await asgi_call(app, "/", set_cookie.split(";", 1)[0])
    stored = json.loads(r.body)["session"] == {"big": "x" * 2000}
    assert stored is (max_age is None or max_age >= 0)  # -1: refused at once


# -- too large ----------------------------------------------------------------------------


@pytest.mark.parametrize("front", ["asgi", "wsgi"])
async def test_too_large_is_caught_by_the_view_or_answered_507(make_store, front, caplog):
    store = make_store(max_size=1000)
    sid = store.create({"n": 1}).id

    async def call(path: str, **options: Any) -> Any:
        if front == "asgi":
            return await asgi_call(asgi(store, **options), path, cookie(sid))
        return wsgi_call(wsgi(store, **options), path, cookie(sid))

    r = await call("/big")
    assert r.status == 200 and r.body == b"too large"  # caught in the view
    with caplog.at_level(logging.ERROR, logger="gatekeep.sessions"):
        r = await call("/grow")
    assert r.status == 507 and b"too large" in r.body and r.set_cookies == []
    assert "max_size=1000" in caplog.text
    r = await call("/grow", on_write_error="ignore")
    assert r.status == 200 and r.body == (b"grown" if front == "asgi" else b"ok")
    assert dict(store.load(sid)) == {"n": 1}  # nothing half-saved


async def test_a_websocket_extends_the_session_it_reads(store):
    from .apps import starlette_app

    sid = store.create({"n": 1}, now=time.time() - 50).id
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"cookie", cookie(sid).encode())],
        "scheme": "ws",
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
        "subprotocols": [],
        "asgi": {"version": "3.0"},
    }
    await starlette_app(store=store)(scope, receive, send)
    assert json.loads(next(m["text"] for m in sent if m["type"] == "websocket.send")) == {"n": 1}
    assert seen_ago(store, sid) < 5  # no response to touch it with: at once


async def test_a_failed_touch_does_not_fail_a_read(store):
    """The touch a read-only request sends with its response is best effort."""
    sid = store.create({"n": 1}, now=time.time() - 50).id

    class NoTouch:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def run(self, calls: Any, now: Any) -> Any:
            if any(c.args[-1:] == ("touch",) for c in calls):
                raise ConnectionError("down")
            return self.inner.run(calls, now)

        async def arun(self, calls: Any, now: Any) -> Any:
            return self.run(calls, now)

    store.executor = NoTouch(store.executor)  # (not in-process any more: read eagerly)
    r = await asgi_call(asgi(store), "/", cookie(sid))
    assert r.status == 200 and json.loads(r.body) == {"session": {"n": 1}}
    assert seen_ago(store, sid) > 45

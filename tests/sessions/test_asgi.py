"""The ASGI middleware through Starlette (and FastAPI), called in-process."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, Request
from itsdangerous import TimestampSigner

from gatekeep import RedisBackend
from gatekeep.errors import SessionWriteFailed
from gatekeep.sessions import SessionNotLoaded, SessionStore, is_session_id
from gatekeep.sessions.asgi import SessionMiddleware
from gatekeep.testing import free_port

from .apps import starlette_app
from .helpers import asgi_call


@pytest.fixture
async def app_store(store):
    yield store
    await store.aclose()


def cookie_of(resp) -> str:
    value = resp.cookie()
    assert value, resp.set_cookies
    return f"session={value}"


async def test_untouched_request_sends_nothing(app_store):
    app = starlette_app(store=app_store)
    r = await asgi_call(app, "/nothing")
    assert r.status == 200 and r.set_cookies == [] and r.header("vary") is None


async def test_read_only_sends_vary_but_no_cookie(app_store):
    app = starlette_app(store=app_store)
    r = await asgi_call(app, "/")
    assert r.header("vary") == "Cookie" and r.set_cookies == []


async def test_write_sets_a_safe_cookie_once(app_store):
    app = starlette_app(store=app_store)
    r = await asgi_call(app, "/inc")
    (set_cookie,) = r.set_cookies
    # Starlette's spelling and order; Max-Age is the idle timeout (max_age), not the
    # absolute lifetime
    assert set_cookie.endswith("; path=/; Max-Age=100; httponly; samesite=lax; secure")
    cookie = cookie_of(r)
    sid, _timestamp, _signature = cookie.split("=", 1)[1].split(".")
    assert is_session_id(sid)  # only the signed id
    r2 = await asgi_call(app, "/inc", cookie)
    assert json.loads(r2.body) == {"n": 2} and r2.set_cookies == []
    r3 = await asgi_call(app, "/", cookie)
    assert json.loads(r3.body) == {"n": 2} and r3.set_cookies == []


async def test_nested_in_place_changes_are_saved(app_store):
    app = starlette_app(store=app_store)
    cookie = cookie_of(await asgi_call(app, "/nested"))
    await asgi_call(app, "/nested", cookie)
    assert json.loads((await asgi_call(app, "/", cookie)).body) == {"cart": ["apple", "apple"]}


async def test_logout_deletes_cookie_and_session(app_store):
    app = starlette_app(store=app_store)
    cookie = cookie_of(await asgi_call(app, "/inc"))
    r = await asgi_call(app, "/logout", cookie)
    assert r.cookie() == "" and "Max-Age=0" in r.set_cookies[0]
    assert json.loads((await asgi_call(app, "/", cookie)).body) == {}


async def test_logout_then_new_data_goes_to_a_new_session(app_store):
    app = starlette_app(store=app_store)
    cookie = cookie_of(await asgi_call(app, "/inc"))
    r = await asgi_call(app, "/logout-flash", cookie)
    new_cookie = cookie_of(r)
    assert new_cookie != cookie
    assert json.loads((await asgi_call(app, "/", new_cookie)).body) == {"flash": "bye"}
    assert json.loads((await asgi_call(app, "/", cookie)).body) == {}


async def test_login_regenerates_the_id(app_store):
    app = starlette_app(store=app_store)
    cookie = cookie_of(await asgi_call(app, "/inc"))
    new_cookie = cookie_of(await asgi_call(app, "/login", cookie))
    assert new_cookie.split(".")[0] != cookie.split(".")[0]
    assert json.loads((await asgi_call(app, "/", new_cookie)).body) == {"n": 1}
    assert json.loads((await asgi_call(app, "/", cookie)).body) == {}
    assert len(await app_store.asessions_of("alice")) == 1


async def test_emptied_session_is_destroyed_with_its_cookie(app_store):
    app = starlette_app(store=app_store)
    cookie = cookie_of(await asgi_call(app, "/inc"))
    r = await asgi_call(app, "/clear", cookie)
    assert r.cookie() == ""
    sid = cookie.split("=", 1)[1].split(".")[0]
    assert not await app_store.aexists(sid)


async def test_no_save_on_5xx(app_store):
    app = starlette_app(store=app_store)
    cookie = cookie_of(await asgi_call(app, "/inc"))
    r = await asgi_call(app, "/boom", cookie)
    assert r.status == 503 and r.set_cookies == []
    assert json.loads((await asgi_call(app, "/", cookie)).body) == {"n": 1}
    r = await asgi_call(app, "/boom")  # a new session is not created either
    assert r.set_cookies == []


async def test_lazy_mode(app_store):
    app = starlette_app(store=app_store, lazy=True)
    cookie = cookie_of(await asgi_call(app, "/inc"))  # no cookie: nothing to load
    assert json.loads((await asgi_call(app, "/lazy", cookie)).body) == {"n": 1}
    if app_store.executor.__class__.__name__ == "MemoryExecutor":
        # in-process: no I/O to await, the session loads on first use anyway
        assert json.loads((await asgi_call(app, "/", cookie)).body) == {"n": 1}
        return
    with pytest.raises(SessionNotLoaded, match="aload"):
        await asgi_call(app, "/", cookie)


async def test_websocket_reads_the_session(app_store):
    app = starlette_app(store=app_store)
    cookie = cookie_of(await asgi_call(app, "/inc"))
    sent = []
    inbox = [{"type": "websocket.connect"}]

    async def receive():
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"cookie", cookie.encode())],
        "scheme": "ws",
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
        "subprotocols": [],
        "asgi": {"version": "3.0"},
    }
    await app(scope, receive, send)
    assert json.loads(next(m["text"] for m in sent if m["type"] == "websocket.send")) == {"n": 1}


async def test_key_rotation(app_store):
    old_app = starlette_app(store=app_store, secret_key="old")
    cookie = cookie_of(await asgi_call(old_app, "/inc"))
    rotated = starlette_app(store=app_store, secret_key=["new", "old"])
    assert json.loads((await asgi_call(rotated, "/", cookie)).body) == {"n": 1}
    new_cookie = cookie_of(await asgi_call(rotated, "/logout-flash", cookie))
    only_new = starlette_app(store=app_store, secret_key="new")
    assert json.loads((await asgi_call(only_new, "/", new_cookie)).body) == {"flash": "bye"}
    assert json.loads((await asgi_call(only_new, "/", cookie)).body) == {}


class CountingExecutor:
    def __init__(self, inner):
        self.inner, self.batches = inner, 0

    def run(self, calls, now):
        self.batches += 1
        return self.inner.run(calls, now)

    async def arun(self, calls, now):
        self.batches += 1
        return await self.inner.arun(calls, now)

    async def aclose(self):
        if hasattr(self.inner, "aclose"):
            await self.inner.aclose()


def tampered(value: str) -> str:
    """One signature character changed (not the last: its low bits are base64 padding)."""
    sid, ts, sig = value.split(".")
    return f"{sid}.{ts}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}"


async def test_bad_cookies_never_reach_the_store_nor_fail(app_store):
    app = starlette_app(store=app_store)
    good = cookie_of(await asgi_call(app, "/inc"))
    value = good.split("=", 1)[1]
    sid = value.split(".")[0]
    expired = TimestampSigner(b"test-secret-key", salt="gatekeep.session")
    expired.get_timestamp = lambda: 1_000_000  # type: ignore[method-assign]
    counting = CountingExecutor(app_store.executor)
    app_store.executor = counting
    bad = [
        "session=garbage",
        f"session={value[:-3]}",
        f"session={value}x",
        f"session={sid}",
        "session=" + "a" * 5000,
        tampered(value),
        b"session=\xff\xfe\x00" + value.encode(),
        f"session={sid}.AAAAAA.{'A' * 43}",
        "session=" + expired.sign(sid).decode(),
        "session=;;;==",
        "=;session",
        f'session="{value}"',
        f"session={value.replace('.', '..')}",
    ]
    for cookie in bad:
        r = await asgi_call(app, "/", cookie)
        assert r.status == 200 and json.loads(r.body) == {}, cookie
    assert counting.batches == 0
    two = f"session={value}; session=garbage"  # one valid among duplicates: used
    assert json.loads((await asgi_call(app, "/", two)).body) == {"n": 1}
    other = cookie_of(await asgi_call(app, "/inc"))
    ambiguous = [good.encode(), other.encode()]  # two valid ones: neither
    assert json.loads((await asgi_call(app, "/", ambiguous)).body) == {}


async def test_store_down_is_not_a_500():
    dead = SessionStore(
        RedisBackend(
            f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2, socket_timeout=0.2
        )
    )
    live = SessionStore()
    good = cookie_of(await asgi_call(starlette_app(store=live), "/inc"))
    app = starlette_app(store=dead)
    r = await asgi_call(app, "/", good)  # load fails: empty, nothing to save
    assert r.status == 200 and json.loads(r.body) == {} and r.set_cookies == []
    r = await asgi_call(app, "/inc", good)  # load fails, the change is lost: said
    assert r.status == 503 and r.header("retry-after") == "1" and r.set_cookies == []
    assert b"could not be saved" in r.body
    r = await asgi_call(app, "/inc")  # save fails: no cookie, a 503
    assert r.status == 503 and r.set_cookies == []
    r = await asgi_call(app, "/logout", good)  # a log-out that cannot be done: said
    assert r.status == 503 and r.set_cookies == []
    # on_write_error="ignore": the app's response goes out, the session says it failed
    seen = []

    async def inc(scope, receive, send):
        session = scope["session"]
        session["n"] = 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        seen.append(session)

    lenient = SessionMiddleware(
        inc, secret_key="test-secret-key", store=dead, on_write_error="ignore"
    )
    r = await asgi_call(lenient, "/inc", good)
    assert r.status == 200 and r.body == b"ok" and r.set_cookies == []
    assert seen[0].save_failed and isinstance(seen[0].save_error, SessionWriteFailed)


async def test_cookie_options():
    app = starlette_app(
        https_only=False, max_age=None, same_site="strict", domain="ex.com", path="/app"
    )
    (c,) = (await asgi_call(app, "/inc")).set_cookies
    assert "secure" not in c and "Max-Age" not in c and "samesite=strict" in c
    assert "domain=ex.com" in c and "; path=/app;" in c
    host = starlette_app(host_prefix=True)
    r = await asgi_call(host, "/inc")
    assert r.cookie("__Host-session") and "; secure" in r.set_cookies[0]
    r2 = await asgi_call(host, "/inc", f"__Host-session={r.cookie('__Host-session')}")
    assert json.loads(r2.body) == {"n": 2}


def test_configuration_errors():
    async def app(scope, receive, send):
        raise AssertionError

    for bad in [
        dict(secret_key=""),
        dict(secret_key=[]),
        dict(secret_key="k", same_site="x"),
        dict(secret_key="k", same_site="none", https_only=False),
        dict(secret_key="k", host_prefix=True, domain="a.com"),
        dict(secret_key="k", session_cookie="bad name"),
        dict(secret_key="k", path="/;x"),
        dict(secret_key="k", store=SessionStore(), max_age=60),
        dict(secret_key="k", partitioned=True, https_only=False),
        dict(secret_key="k", max_age=1.5),
        dict(secret_key="k", max_age=True),
        dict(secret_key="k", max_age=10**9),
    ]:
        with pytest.raises(ValueError):
            SessionMiddleware(app, **bad)


async def test_fastapi_request_session():
    api = FastAPI()

    @api.get("/count")
    async def count(request: Request) -> dict[str, int]:
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    @api.get("/session")
    async def whole(request: Request) -> dict[str, int]:
        request.session["seen"] = True
        return request.session  # a dict: FastAPI encodes it as one

    api.add_middleware(SessionMiddleware, secret_key="k", https_only=False)
    cookie = cookie_of(await asgi_call(api, "/count"))
    assert json.loads((await asgi_call(api, "/count", cookie)).body) == {"n": 2}
    assert json.loads((await asgi_call(api, "/session", cookie)).body) == {"n": 2, "seen": True}


async def test_non_strict_store_adopts_a_signed_unknown_id(make_store):
    store = make_store(strict=False)
    app = starlette_app(store=store)
    try:
        cookie = cookie_of(await asgi_call(app, "/inc"))
        sid = cookie.split("=", 1)[1].split(".")[0]
        await store.adestroy(sid)  # tombstoned: never adopted again
        r = await asgi_call(app, "/inc", cookie)
        assert json.loads(r.body) == {"n": 1} and r.cookie() not in (None, "")
        assert r.cookie().split(".")[0] != sid
        unknown = SessionMiddleware(app, secret_key="test-secret-key").core.signer.sign("Q" * 47)
        r = await asgi_call(app, "/inc", f"session={unknown}")
        assert r.set_cookies == []  # adopted: the cookie stays as it is
        assert dict(await store.aload("Q" * 47)) == {"n": 1}
    finally:
        await store.aclose()

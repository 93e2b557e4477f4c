"""The WSGI middleware: the same behaviour as the ASGI one, lazy by default."""

from __future__ import annotations

import json

import pytest

from gatekeep import RedisBackend
from gatekeep.sessions import SessionStore
from gatekeep.sessions.wsgi import SessionMiddleware
from gatekeep.testing import free_port

from .apps import wsgi_app
from .helpers import wsgi_call


class Counting:
    def __init__(self, inner):
        self.inner, self.batches = inner, 0

    def run(self, calls, now):
        self.batches += 1
        return self.inner.run(calls, now)

    async def arun(self, calls, now):
        raise AssertionError("WSGI must not use the async path")


@pytest.fixture
def counted(store):
    store.executor = Counting(store.executor)
    return store


def make(store, **options):
    return SessionMiddleware(wsgi_app, "test-secret-key", store=store, **options)


def test_flow_and_round_trips(counted):
    app = make(counted)
    r = wsgi_call(app, "/nothing")
    assert r.set_cookies == [] and r.header("vary") is None and counted.executor.batches == 0
    r = wsgi_call(app, "/inc")
    (c,) = r.set_cookies
    assert c.endswith("; path=/; Max-Age=100; httponly; samesite=lax; secure")
    cookie = f"session={r.cookie()}"
    assert counted.executor.batches == 1  # a new session: one save, no load
    counted.executor.batches = 0
    r = wsgi_call(app, "/", cookie)
    assert json.loads(r.body) == {"n": 1} and r.header("vary") == "Cookie"
    assert r.set_cookies == [] and counted.executor.batches == 1  # read only: one
    counted.executor.batches = 0
    r = wsgi_call(app, "/nothing", cookie)
    assert counted.executor.batches == 0  # lazy: never used, never loaded
    r = wsgi_call(app, "/inc", cookie)
    assert json.loads(r.body) == {"n": 2} and counted.executor.batches == 2  # load + save


def test_login_logout_and_5xx(store):
    app = make(store)
    cookie = f"session={wsgi_call(app, '/inc').cookie()}"
    r = wsgi_call(app, "/boom", cookie)
    assert r.status == 500 and r.set_cookies == []
    login = wsgi_call(app, "/login", cookie)
    new_cookie = f"session={login.cookie()}"
    assert new_cookie != cookie
    assert json.loads(wsgi_call(app, "/", cookie).body) == {}
    assert json.loads(wsgi_call(app, "/", new_cookie).body) == {"n": 1}
    out = wsgi_call(app, "/logout", new_cookie)
    assert out.cookie() == ""
    assert json.loads(wsgi_call(app, "/", new_cookie).body) == {}


def test_bad_cookies_and_store_down(store):
    app = make(store)
    for cookie in [
        "session=\udcff\udcfe",
        "session=a.b.c",
        "session=" + "x" * 9000,
        "session",
        "session=1; session=2",
    ]:
        r = wsgi_call(app, "/", cookie)
        assert r.status == 200 and json.loads(r.body) == {}
    dead = SessionStore(
        RedisBackend(
            f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2, socket_timeout=0.2
        )
    )
    good = f"session={wsgi_call(app, '/inc').cookie()}"
    r = wsgi_call(make(dead), "/", good)
    assert r.status == 200 and r.set_cookies == [] and json.loads(r.body) == {}
    r = wsgi_call(make(dead), "/inc", good)  # the change cannot be saved: a clear 503
    assert r.status == 503 and r.set_cookies == [] and r.header("retry-after") == "1"
    assert b"could not be saved" in r.body
    r = wsgi_call(make(dead, on_write_error="ignore"), "/inc", good)
    assert r.status == 200 and json.loads(r.body) == {"n": 1}


def test_eager_option(counted):
    app = make(counted, lazy=False)
    cookie = f"session={wsgi_call(app, '/inc').cookie()}"
    counted.executor.batches = 0
    wsgi_call(app, "/nothing", cookie)
    assert counted.executor.batches == 1

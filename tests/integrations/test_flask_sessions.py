"""Flask's ``session`` on gatekeep's store (GatekeepSessionInterface), through Flask's
test client, on the in-process store and on real servers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, abort, jsonify, session
from flask.typing import ResponseReturnValue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeep import RedisBackend
from gatekeep.flask_sessions import FlaskSession, GatekeepSessionInterface
from gatekeep.sessions import SessionStore
from gatekeep.sessions.cookies import CookieSigner
from gatekeep.testing import free_port

STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("valkey", id="valkey", marks=pytest.mark.redis),
]
BASE = "https://localhost"  # the cookie is Secure by default


def make_app(store: SessionStore | str | None, **options: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="flask-secret", TESTING=True)
    config = options.pop("config", {})
    app.config.update(config)
    GatekeepSessionInterface(store, **options).init_app(app)

    @app.get("/inc")
    def inc() -> ResponseReturnValue:
        session["n"] = session.get("n", 0) + 1
        return jsonify(n=session["n"], new=session.new)

    @app.get("/show")
    def show() -> ResponseReturnValue:
        return jsonify(n=session.get("n"), user=session.user_id)  # type: ignore[attr-defined]

    @app.get("/nothing")
    def nothing() -> ResponseReturnValue:
        return "nothing"

    @app.post("/login/<user>")
    def login(user: str) -> ResponseReturnValue:
        session.set_user(user)  # type: ignore[attr-defined]
        return jsonify(user=user)

    @app.post("/regenerate")
    def regenerate() -> ResponseReturnValue:
        session.regenerate()  # type: ignore[attr-defined]
        return "ok"

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        session.destroy()  # type: ignore[attr-defined]
        return "bye"

    @app.post("/clear")
    def clear() -> ResponseReturnValue:
        session.clear()
        return "cleared"

    @app.post("/permanent/<int:on>")
    def permanent(on: int) -> ResponseReturnValue:
        session.permanent = bool(on)
        return "ok"

    @app.post("/nested")
    def nested() -> ResponseReturnValue:
        session.setdefault("cart", []).append("apple")  # no session.modified = True
        return jsonify(cart=session["cart"])

    @app.get("/fail")
    def fail() -> ResponseReturnValue:
        session["lost"] = True
        abort(503)

    @app.get("/crash")
    def crash() -> ResponseReturnValue:
        session["lost"] = True
        raise RuntimeError("boom")

    @app.get("/bad")
    def bad() -> ResponseReturnValue:
        session["when"] = {1, 2}
        return "never"

    return app


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, servers: Any, prefix: str) -> Iterator[SessionStore]:
    backend = None if request.param == "memory" else RedisBackend(servers.get(request.param).url)
    yield SessionStore(backend, prefix=prefix, idle_timeout=3600, absolute_timeout=7200)
    if backend is not None:
        backend.close()


def set_cookies(r: Any) -> list[str]:
    return list(r.headers.getlist("Set-Cookie"))


def cookie_value(r: Any, name: str = "session") -> str:
    (header,) = set_cookies(r)
    assert header.startswith(name + "=")
    return str(header.split(";")[0].split("=", 1)[1])


def test_flow_cookie_and_vary(store: SessionStore) -> None:
    app = make_app(store)
    c = app.test_client()
    r = c.get("/nothing", base_url=BASE)
    assert set_cookies(r) == [] and "Vary" not in r.headers
    r = c.get("/inc", base_url=BASE)
    assert r.json == {"n": 1, "new": True}
    (header,) = set_cookies(r)
    assert all(a in header for a in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/"))
    assert "Max-Age" not in header  # not permanent: a browser-session cookie
    assert r.headers["Vary"] == "Cookie"
    r = c.get("/inc", base_url=BASE)
    assert r.json == {"n": 2, "new": False} and set_cookies(r) == []  # same id: no cookie
    r = c.get("/show", base_url=BASE)
    assert r.json == {"n": 2, "user": None} and set_cookies(r) == []
    r = c.post("/nested", base_url=BASE)
    r = c.post("/nested", base_url=BASE)
    assert r.json == {"cart": ["apple", "apple"]}
    assert c.get("/show", base_url=BASE).json["n"] == 2


def test_regenerate_login_logout(store: SessionStore) -> None:
    app = make_app(store)
    c = app.test_client()
    first = cookie_value(c.get("/inc", base_url=BASE))
    sid = CookieSigner("flask-secret").unsign(first, None)[0]  # type: ignore[index]
    second = cookie_value(c.post("/login/alice", base_url=BASE))
    new_sid = CookieSigner("flask-secret").unsign(second, None)[0]  # type: ignore[index]
    assert new_sid != sid and not store.exists(sid) and store.exists(new_sid)
    assert c.get("/show", base_url=BASE).json == {"n": 1, "user": "alice"}
    assert len(store.sessions_of("alice")) == 1
    third = cookie_value(c.post("/regenerate", base_url=BASE))
    assert third != second and c.get("/show", base_url=BASE).json["user"] == "alice"

    # the old cookies give a fresh session
    old = app.test_client(use_cookies=False)
    for value in (first, second):
        r = old.get("/show", base_url=BASE, headers={"Cookie": f"session={value}"})
        assert r.json == {"n": None, "user": None} and r.status_code == 200

    r = c.post("/logout", base_url=BASE)
    (header,) = set_cookies(r)
    assert header.startswith("session=;") and "Max-Age=0" in header
    assert store.sessions_of("alice") == []
    r = old.get("/show", base_url=BASE, headers={"Cookie": f"session={third}"})
    assert r.json == {"n": None, "user": None}


def test_clear_ends_the_session(store: SessionStore) -> None:
    app = make_app(store)
    c = app.test_client()
    value = cookie_value(c.get("/inc", base_url=BASE))
    sid = CookieSigner("flask-secret").unsign(value, None)[0]  # type: ignore[index]
    r = c.post("/clear", base_url=BASE)
    assert "Max-Age=0" in set_cookies(r)[0] and not store.exists(sid)


def test_permanent(store: SessionStore) -> None:
    app = make_app(store)
    c = app.test_client()
    c.get("/inc", base_url=BASE)
    r = c.post("/permanent/1", base_url=BASE)
    (header,) = set_cookies(r)
    max_age = int(header.split("Max-Age=")[1].split(";")[0])
    assert 3500 <= max_age <= 3600  # until the idle expiry (the sooner of idle/absolute)
    # SESSION_REFRESH_EACH_REQUEST (True): sent again, even when untouched
    assert len(set_cookies(c.post("/permanent/1", base_url=BASE))) == 1
    assert len(set_cookies(c.get("/nothing", base_url=BASE))) == 1
    r = c.post("/permanent/0", base_url=BASE)
    assert "Max-Age" not in set_cookies(r)[0]
    assert set_cookies(c.get("/nothing", base_url=BASE)) == []
    assert c.get("/show", base_url=BASE).json["n"] == 1


def test_5xx_not_saved(store: SessionStore) -> None:
    app = make_app(store)
    app.config["TESTING"] = False  # an unhandled error becomes a 500 response
    c = app.test_client()
    for path, status in [("/fail", 503), ("/crash", 500)]:
        r = c.get(path, base_url=BASE)
        assert r.status_code == status and set_cookies(r) == []
    assert c.get("/show", base_url=BASE).json == {"n": None, "user": None}


def test_json_only(store: SessionStore) -> None:
    app = make_app(store)
    with pytest.raises(TypeError, match="JSON"):
        app.test_client().get("/bad", base_url=BASE)


def test_cookie_config_and_rotation(store: SessionStore) -> None:
    config = {
        "SESSION_COOKIE_NAME": "sid",
        "SESSION_COOKIE_PATH": "/app",
        "SESSION_COOKIE_DOMAIN": "example.com",
        "SESSION_COOKIE_SAMESITE": "Strict",
        "SECRET_KEY": "old-key",
    }
    old_app = make_app(store, config=config, https_only=False)
    c = old_app.test_client()
    r = c.get("/inc", base_url="http://example.com")
    header = set_cookies(r)[0]
    assert header.startswith("sid=") and "Path=/app" in header
    assert "Domain=example.com" in header and "SameSite=Strict" in header
    assert "Secure" not in header
    value = cookie_value(r, "sid")
    # a new key signs; the old one still verifies (secret_keys= or SECRET_KEY_FALLBACKS)
    for options in (
        {"secret_keys": ["old-key"]},
        {"config": {**config, "SECRET_KEY": "new-key", "SECRET_KEY_FALLBACKS": ["old-key"]}},
    ):
        options.setdefault("config", {**config, "SECRET_KEY": "new-key"})
        app = make_app(store, https_only=False, **options)
        c2 = app.test_client(use_cookies=False)
        r = c2.get("/show", base_url="http://example.com", headers={"Cookie": f"sid={value}"})
        assert r.json["n"] == 1
    # without the old key, the cookie is worthless
    app = make_app(store, https_only=False, config={**config, "SECRET_KEY": "new-key"})
    r = app.test_client(use_cookies=False).get(
        "/show", base_url="http://example.com", headers={"Cookie": f"sid={value}"}
    )
    assert r.json["n"] is None


def test_store_built_from_flask_config() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", PERMANENT_SESSION_LIFETIME=timedelta(hours=2))
    interface = GatekeepSessionInterface()
    interface.init_app(app)
    state = app.extensions["gatekeep.sessions"]
    assert state.store.idle_us == 7200 * 10**6 and state.store.absolute_us == 30 * 86400 * 10**6
    with pytest.raises(RuntimeError, match="secret_key"):
        GatekeepSessionInterface().init_app(Flask(__name__))
    with pytest.raises(TypeError, match="store must be"):
        GatekeepSessionInterface(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same_site"):
        bad = Flask(__name__)
        bad.config.update(SECRET_KEY="k", SESSION_COOKIE_SAMESITE="sometimes")
        GatekeepSessionInterface().init_app(bad)


def test_session_transaction(store: SessionStore) -> None:
    app = make_app(store)
    c = app.test_client()
    with c.session_transaction(base_url=BASE) as s:
        assert isinstance(s, FlaskSession)
        s["n"] = 41
    assert c.get("/inc", base_url=BASE).json["n"] == 42


class Counting:
    def __init__(self, inner: Any) -> None:
        self.inner, self.batches = inner, 0

    def run(self, calls: Any, now: Any) -> Any:
        self.batches += 1
        return self.inner.run(calls, now)


def test_round_trips() -> None:
    store = SessionStore(idle_timeout=60, absolute_timeout=120)
    counting = Counting(store.executor)
    store.executor = counting  # type: ignore[assignment]
    c = make_app(store).test_client()
    c.get("/inc", base_url=BASE)
    assert counting.batches == 1  # new session: one save
    counting.batches = 0
    c.get("/nothing", base_url=BASE)
    assert counting.batches == 0  # never touched: never loaded
    c.get("/show", base_url=BASE)
    assert counting.batches == 1  # read only
    counting.batches = 0
    c.get("/inc", base_url=BASE)
    assert counting.batches == 2  # load + save


def test_a_read_touches_only_when_due(store: SessionStore) -> None:
    """A read-only request reads without the touch; the response touches the session
    once a tenth of the idle timeout has passed since it last moved (as ASGI's)."""
    s = store.create({"n": 1}, now=time.time() - 400)  # idle timeout 3600 s
    counting = Counting(store.executor)
    store.executor = counting  # type: ignore[assignment]
    c = make_app(store).test_client(use_cookies=False)
    value = CookieSigner("flask-secret").sign(s.id or "")
    headers = {"Cookie": f"session={value}"}
    assert c.get("/show", base_url=BASE, headers=headers).get_json() == {"n": 1, "user": None}
    assert counting.batches == 2  # the read, then the touch (400 s > a tenth)
    counting.batches = 0
    assert c.get("/show", base_url=BASE, headers=headers).get_json() == {"n": 1, "user": None}
    assert counting.batches == 1  # fresh: the read alone
    meta = store.meta(s.id or "")
    assert meta is not None and meta.ttl > 3590  # moved to now + 3600 s


def test_store_down_never_500(prefix: str) -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0")
    value = CookieSigner("flask-secret").sign("abcd" + "x" * 43)
    # default: a write that fails is a 503 with Retry-After, not the view's "done"
    c = make_app(SessionStore(backend, prefix=prefix)).test_client(use_cookies=False)
    r = c.get("/inc", base_url=BASE)
    assert r.status_code == 503 and r.headers["Retry-After"] and set_cookies(r) == []
    r = c.get("/nothing", base_url=BASE, headers={"Cookie": f"session={value}"})
    assert r.status_code == 200  # never loaded: nothing to fail
    r = c.get("/show", base_url=BASE, headers={"Cookie": f"session={value}"})
    assert r.status_code == 200 and r.json == {"n": None, "user": None}  # load failed
    # "ignore": the view's response, unsaved
    c = make_app(SessionStore(backend, prefix=prefix), on_write_error="ignore").test_client(
        use_cookies=False
    )
    r = c.get("/inc", base_url=BASE)
    assert r.status_code == 200 and r.json["n"] == 1 and set_cookies(r) == []
    r = c.post("/logout", base_url=BASE, headers={"Cookie": f"session={value}"})
    assert r.status_code == 200
    with pytest.raises(ValueError, match="on_write_error"):
        make_app(None, on_write_error="shrug")
    backend.close()


# -- fuzz: no cookie value gives a 500 or someone else's session ----------------------------


def _victim(app: Flask) -> str:
    c = app.test_client()
    c.post("/login/victim", base_url=BASE)
    r = c.get("/inc", base_url=BASE)
    assert r.json["n"] == 1
    return str(c.get_cookie("session", domain="localhost").value)  # type: ignore[union-attr]


def _mutations(value: str) -> st.SearchStrategy[str]:
    i = st.integers(0, len(value) - 1)
    alphabet = 'ABCDEFabcdef0123456789-_.=;, "\\\x00é'
    return st.one_of(
        st.text(max_size=300),
        st.text(alphabet=alphabet, max_size=120),
        i.map(lambda n: value[:n]),
        st.tuples(i, st.sampled_from(alphabet)).map(
            lambda t: value[: t[0]] + t[1] + value[t[0] + 1 :]
        ),
        st.just(value.swapcase()),
        st.just(value + "x"),
        st.just(value * 3),
        st.just(value.split(".")[0]),  # the id alone, unsigned
    )


@pytest.mark.parametrize("store", [STORES[0], STORES[1]], indirect=True)
def test_fuzz_cookies(store: SessionStore) -> None:
    app = make_app(store)
    app.config["TESTING"] = False
    victim = _victim(app)
    sid = CookieSigner("flask-secret").unsign(victim, None)[0]  # type: ignore[index]
    c = app.test_client(use_cookies=False)

    @settings(
        max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(value=_mutations(victim), twice=st.booleans())
    def check(value: str, twice: bool) -> None:
        if value == victim:
            return
        cookie = f"session={value}" + (f"; session={victim}" if twice else "")
        try:
            r = c.get("/show", base_url=BASE, headers={"Cookie": cookie})
        except (UnicodeEncodeError, ValueError):
            return  # werkzeug's test client cannot even send this header
        assert r.status_code == 200
        if not twice:
            assert r.json == {"n": None, "user": None}
        # a second, valid cookie next to a bad one: still never a 500, never mixed up
        assert r.json in ({"n": None, "user": None}, {"n": 1, "user": "victim"})
        for header in r.headers.getlist("Set-Cookie"):
            assert sid not in header

    check()
    assert store.exists(sid)


def test_too_large_by_nested_growth_is_a_507() -> None:
    # A write the view makes is checked at once (SessionTooLarge in the view); growth of
    # a nested value can only be seen at save time: nothing is saved, 507, never a 500.
    app = make_app(SessionStore(max_size=200))

    @app.post("/grow")
    def grow() -> ResponseReturnValue:
        session.setdefault("cart", []).extend(["x" * 50] * 10)
        return "grown"

    c = app.test_client()
    c.get("/inc", base_url=BASE)
    r = c.post("/grow", base_url=BASE)
    assert r.status_code == 507 and set_cookies(r) == []
    assert c.get("/show", base_url=BASE).json["n"] == 1

"""Flask's documented session semantics, run against Flask's own cookie sessions and
against gatekeep's (in-process, and on a real Redis server).

Each test states what Flask documents (docs/config.rst, ``flask.sessions``:
``SessionInterface`` / ``SecureCookieSessionInterface``) and checks it on every
implementation, so the expectations are shown to be Flask's, not gatekeep's. Where
gatekeep deliberately differs, the ``Impl`` says so, and the test checks gatekeep's
own behaviour (each difference is listed in the README's Flask section):

- ``Secure`` by default (``https_only=False`` drops it), ``SameSite=Lax`` when unset;
- the cookie holds only the signed session id, so a non-permanent session's cookie
  goes out when its id changes, not on every change of the data;
- nested in-place changes are saved without ``session.modified = True``;
- ``session.new`` tells a new session (Flask's cookie session always says False).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from importlib.metadata import version
from typing import Any

import pytest
from flask import Flask, jsonify, session
from flask.typing import ResponseReturnValue

from gatekeep import RedisBackend
from gatekeep.flask_sessions import GatekeepSessionInterface
from gatekeep.sessions import SessionStore
from gatekeep.sessions.store import DAY

BASE = "https://example.com"
FLASK = tuple(int(part) for part in version("flask").split(".")[:2])


@dataclass(frozen=True)
class Impl:
    name: str
    make: Callable[..., Flask]

    @property
    def gatekeep(self) -> bool:
        return self.name != "flask"

    @property
    def since_flask_31(self) -> bool:
        """Does what Flask 3.1 added: SESSION_COOKIE_PARTITIONED, SECRET_KEY_FALLBACKS,
        and a session marked accessed when only its keys are read (``items()``, ``in``).
        gatekeep's interface does on every Flask 3; Flask's own sessions from 3.1."""
        return self.gatekeep or FLASK >= (3, 1)


def add_views(app: Flask) -> Flask:
    @app.get("/nothing")
    def nothing() -> ResponseReturnValue:
        return "nothing"

    @app.get("/read")
    def read() -> ResponseReturnValue:
        data = {k: v for k, v in session.items() if k != "_permanent"}
        return jsonify(
            data=data,
            accessed=session.accessed,
            modified=session.modified,
            permanent=session.permanent,
        )

    @app.post("/set/<key>/<value>")
    def set_(key: str, value: str) -> ResponseReturnValue:
        session[key] = value
        return jsonify(modified=session.modified)

    @app.post("/permanent/<int:on>")
    def permanent(on: int) -> ResponseReturnValue:
        session.permanent = bool(on)
        return "ok"

    @app.post("/nested")
    def nested() -> ResponseReturnValue:
        session.setdefault("cart", []).append("apple")
        session.modified = True  # Flask needs it for a nested change
        return "ok"

    @app.post("/nested-unflagged")
    def nested_unflagged() -> ResponseReturnValue:
        session["cart"].append("pear")  # no dict method: Flask's session cannot see it
        return "ok"

    @app.post("/flag-modified")
    def flag_modified() -> ResponseReturnValue:
        session.modified = True  # nothing changed, but the app says it did
        return "ok"

    @app.post("/clear")
    def clear() -> ResponseReturnValue:
        session.clear()
        return "ok"

    @app.get("/json")
    def as_json() -> ResponseReturnValue:
        # The session object, not the flask.session proxy: the C encoder takes only
        # real dicts, so json.dumps(flask.session) fails with Flask's own sessions too.
        return json.dumps(session._get_current_object(), sort_keys=True)  # type: ignore[attr-defined]

    return app


def flask_app(config: dict[str, Any] | None = None, **_: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"SECRET_KEY": "conformance", **(config or {})})
    return add_views(app)


def gatekeep_factory(backend: Any, prefix: str) -> Callable[..., Flask]:
    # One key space for every app of a test (so that apps with other keys can share
    # sessions); each app's idle timeout is its PERMANENT_SESSION_LIFETIME, as in the
    # store the interface builds (test_interface_builds_its_store_from_the_config).
    base = SessionStore(backend, prefix=prefix, absolute_timeout=30 * DAY)

    def make(config: dict[str, Any] | None = None, **options: Any) -> Flask:
        app = Flask(__name__)
        app.config.update({"SECRET_KEY": "conformance", **(config or {})})
        store = base.with_idle_timeout(app.permanent_session_lifetime.total_seconds())
        GatekeepSessionInterface(store, **options).init_app(app)
        return add_views(app)

    return make


GATEKEEP = [
    pytest.param("memory", id="gatekeep-memory"),
    pytest.param("redis", id="gatekeep-redis", marks=pytest.mark.redis),
]


def _impl(kind: str, servers: Any, prefix: str) -> Iterator[Impl]:
    if kind == "flask":
        yield Impl("flask", flask_app)
        return
    backend = None if kind == "memory" else RedisBackend(servers.get(kind).url)
    yield Impl(kind, gatekeep_factory(backend, prefix))
    if backend is not None:
        backend.close()


@pytest.fixture(params=[pytest.param("flask", id="flask"), *GATEKEEP])
def impl(request: pytest.FixtureRequest, servers: Any, prefix: str) -> Iterator[Impl]:
    """Flask's own cookie sessions, then gatekeep's: Flask's documented semantics."""
    yield from _impl(request.param, servers, prefix)


@pytest.fixture(params=GATEKEEP)
def gatekeep_impl(request: pytest.FixtureRequest, servers: Any, prefix: str) -> Iterator[Impl]:
    """gatekeep's only: where it differs from Flask on purpose, or goes further."""
    yield from _impl(request.param, servers, prefix)


# -- reading Set-Cookie -------------------------------------------------------------------


def parse(header: str) -> tuple[str, str, dict[str, str]]:
    """``(name, value, attributes)``, attribute names lowercased."""
    first, *rest = header.split(";")
    name, _, value = first.strip().partition("=")
    attrs = {}
    for part in rest:
        key, _, val = part.strip().partition("=")
        attrs[key.lower()] = val
    return name, value, attrs


def the_cookie(r: Any, name: str = "session") -> dict[str, str] | None:
    """The attributes of the one ``Set-Cookie`` for ``name`` (value under ``""``)."""
    found = [parse(h) for h in r.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    assert len(found) <= 1, found
    if not found:
        return None
    return {**found[0][2], "": found[0][1]}


def expires_in(attrs: dict[str, str]) -> float | None:
    """Seconds until the cookie expires (Max-Age wins, as in browsers), or None."""
    if "max-age" in attrs:
        return float(attrs["max-age"])
    if "expires" in attrs:
        when = parsedate_to_datetime(attrs["expires"])
        return (when - datetime.now(timezone.utc)).total_seconds()
    return None


def deleted(attrs: dict[str, str] | None) -> bool:
    return attrs is not None and attrs[""] == "" and (expires_in(attrs) or 0) <= 0


# -- SESSION_COOKIE_* -----------------------------------------------------------------------


def test_cookie_name_domain_path(impl: Impl) -> None:
    # SESSION_COOKIE_NAME, _DOMAIN and _PATH are the cookie's name, Domain and Path.
    app = impl.make(
        {
            "SESSION_COOKIE_NAME": "sid",
            "SESSION_COOKIE_DOMAIN": "example.com",
            "SESSION_COOKIE_PATH": "/app",
        }
    )
    c = app.test_client()
    r = c.post("/set/a/1", base_url=BASE + "/app/")
    attrs = the_cookie(r, "sid")
    assert attrs is not None and the_cookie(r) is None
    assert attrs["domain"].lstrip(".") == "example.com" and attrs["path"] == "/app"
    assert c.get("/read", base_url=BASE + "/app/").json["data"] == {"a": "1"}


def test_cookie_path_defaults_to_application_root(impl: Impl) -> None:
    # "If not set, the cookie will be valid underneath APPLICATION_ROOT or / if that is
    # not set"; no Domain unless SESSION_COOKIE_DOMAIN is set.
    app = impl.make({"APPLICATION_ROOT": "/shop"})
    r = app.test_client().post("/set/a/1", base_url=BASE + "/shop/")
    attrs = the_cookie(r)
    assert attrs is not None and attrs["path"] == "/shop" and "domain" not in attrs
    r = impl.make().test_client().post("/set/a/1", base_url=BASE)
    assert the_cookie(r)["path"] == "/"  # type: ignore[index]


@pytest.mark.parametrize("httponly", [True, False, None])
def test_httponly(impl: Impl, httponly: bool | None) -> None:
    # SESSION_COOKIE_HTTPONLY: default True.
    config = {} if httponly is None else {"SESSION_COOKIE_HTTPONLY": httponly}
    r = impl.make(config).test_client().post("/set/a/1", base_url=BASE)
    attrs = the_cookie(r)
    assert attrs is not None and ("httponly" in attrs) == (httponly is not False)


def test_secure(impl: Impl) -> None:
    # SESSION_COOKIE_SECURE=True marks the cookie Secure.
    r = impl.make({"SESSION_COOKIE_SECURE": True}).test_client().post("/set/a/1", base_url=BASE)
    assert "secure" in the_cookie(r)  # type: ignore[operator]
    # Its default, False: Flask's cookie is not Secure. gatekeep's is (a difference),
    # unless https_only=False is passed.
    r = impl.make().test_client().post("/set/a/1", base_url=BASE)
    assert ("secure" in the_cookie(r)) == impl.gatekeep  # type: ignore[operator]
    r = impl.make(https_only=False).test_client().post("/set/a/1", base_url=BASE)
    assert "secure" not in the_cookie(r)  # type: ignore[operator]
    # https_only=False does not override an explicit SESSION_COOKIE_SECURE=True
    r = (
        impl.make({"SESSION_COOKIE_SECURE": True}, https_only=False)
        .test_client()
        .post("/set/a/1", base_url=BASE)
    )
    assert "secure" in the_cookie(r)  # type: ignore[operator]


@pytest.mark.parametrize("same_site", ["Lax", "Strict", "None", None])
def test_samesite(impl: Impl, same_site: str | None) -> None:
    # SESSION_COOKIE_SAMESITE: the SameSite attribute; unset, Flask sends none and
    # gatekeep Lax (a difference). SameSite=None needs Secure (browsers require it).
    config: dict[str, Any] = {"SESSION_COOKIE_SECURE": True}
    if same_site is not None:
        config["SESSION_COOKIE_SAMESITE"] = same_site
    r = impl.make(config).test_client().post("/set/a/1", base_url=BASE)
    attrs = the_cookie(r)
    assert attrs is not None
    expected = same_site or ("Lax" if impl.gatekeep else None)
    assert attrs.get("samesite") == expected


@pytest.mark.parametrize("partitioned", [True, False])
def test_partitioned(impl: Impl, partitioned: bool) -> None:
    # SESSION_COOKIE_PARTITIONED (Flask 3.1): the Partitioned attribute (CHIPS), which
    # also makes the cookie Secure; also on the cookie that deletes the session.
    # (A partitioned cookie is for cross-site frames: SameSite=None.)
    config: dict[str, Any] = {"SESSION_COOKIE_PARTITIONED": partitioned}
    if partitioned:
        config["SESSION_COOKIE_SAMESITE"] = "None"
    app = impl.make(config, https_only=False)
    c = app.test_client()
    on = partitioned and impl.since_flask_31  # Flask 3.0 does not know the setting
    attrs = the_cookie(c.post("/set/a/1", base_url=BASE))
    assert attrs is not None and ("partitioned" in attrs) == on
    assert ("secure" in attrs) == on
    assert attrs.get("samesite") == ("None" if partitioned else "Lax" if impl.gatekeep else None)
    attrs = the_cookie(c.post("/clear", base_url=BASE))
    assert deleted(attrs) and ("partitioned" in attrs) == on  # type: ignore[operator]


def test_attributes_on_the_deleting_cookie(impl: Impl) -> None:
    # An emptied session's cookie is removed with the same name, Domain and Path.
    app = impl.make(
        {
            "SESSION_COOKIE_NAME": "sid",
            "SESSION_COOKIE_DOMAIN": "example.com",
            "SESSION_COOKIE_PATH": "/app",
            "SESSION_COOKIE_HTTPONLY": False,
            "SESSION_COOKIE_SECURE": True,
            "SESSION_COOKIE_SAMESITE": "Strict",
        }
    )
    c = app.test_client()
    c.post("/set/a/1", base_url=BASE + "/app/")
    r = c.post("/clear", base_url=BASE + "/app/")
    attrs = the_cookie(r, "sid")
    assert deleted(attrs) and attrs is not None
    assert attrs["domain"].lstrip(".") == "example.com" and attrs["path"] == "/app"
    assert "httponly" not in attrs and "secure" in attrs and attrs["samesite"] == "Strict"
    assert r.headers["Vary"] == "Cookie"
    assert c.get("/read", base_url=BASE + "/app/").json["data"] == {}


# -- data, modified, accessed ------------------------------------------------------------


def test_data_survives_and_empty_session_deletes_its_cookie(impl: Impl) -> None:
    c = impl.make().test_client()
    assert the_cookie(c.get("/read", base_url=BASE)) is None  # empty: no cookie
    c.post("/set/a/1", base_url=BASE)
    c.post("/set/b/2", base_url=BASE)
    assert c.get("/read", base_url=BASE).json["data"] == {"a": "1", "b": "2"}
    # "If the session is modified to be empty, remove the cookie."
    assert deleted(the_cookie(c.post("/clear", base_url=BASE)))
    assert c.get("/read", base_url=BASE).json["data"] == {}


def test_modified(impl: Impl) -> None:
    # A change of the session itself sets modified; reading does not.
    c = impl.make().test_client()
    assert c.post("/set/a/1", base_url=BASE).json["modified"] is True
    r = c.get("/read", base_url=BASE).json
    assert r["modified"] is False and r["accessed"] is impl.since_flask_31  # read by items()
    # A nested change is saved when the app sets session.modified = True.
    c.post("/nested", base_url=BASE)
    c.post("/nested", base_url=BASE)
    assert c.get("/read", base_url=BASE).json["data"]["cart"] == ["apple", "apple"]


def test_nested_change_without_the_flag(impl: Impl) -> None:
    # Flask: "if the session contains mutable data (for example a nested dict) then this
    # must be set to True manually". gatekeep compares values, so it is saved anyway.
    c = impl.make().test_client()
    c.post("/nested", base_url=BASE)
    c.post("/nested-unflagged", base_url=BASE)
    cart = c.get("/read", base_url=BASE).json["data"]["cart"]
    assert cart == (["apple", "pear"] if impl.gatekeep else ["apple"])


def test_accessed_and_vary(impl: Impl) -> None:
    # "A Vary: cookie header will be added if this is True" (the session was accessed).
    c = impl.make().test_client()
    c.post("/set/a/1", base_url=BASE)
    r = c.get("/nothing", base_url=BASE)
    assert "Vary" not in r.headers and the_cookie(r) is None
    # /read reads by items(), which marks the session accessed from Flask 3.1 on (when
    # it reports; on Flask 3.0 its later read of session.permanent marks it in time for Vary).
    r = c.get("/read", base_url=BASE)
    assert r.json["accessed"] is impl.since_flask_31 and r.headers["Vary"] == "Cookie"
    # An empty session that was only read: Vary, and no cookie.
    r = impl.make().test_client().get("/read", base_url=BASE)
    assert r.headers["Vary"] == "Cookie" and the_cookie(r) is None


# -- permanent, PERMANENT_SESSION_LIFETIME, SESSION_REFRESH_EACH_REQUEST ---------------------

LIFETIME = {"PERMANENT_SESSION_LIFETIME": timedelta(hours=2)}


def test_permanent_cookie_expires_after_the_lifetime(impl: Impl) -> None:
    # "If session.permanent is true, the cookie's expiration will be set this number of
    # seconds in the future"; a non-permanent session's cookie has none (browser session).
    c = impl.make(LIFETIME).test_client()
    attrs = the_cookie(c.post("/set/a/1", base_url=BASE))
    assert attrs is not None and expires_in(attrs) is None
    attrs = the_cookie(c.post("/permanent/1", base_url=BASE))
    assert attrs is not None
    assert 7200 - 5 <= expires_in(attrs) <= 7200 + 1  # type: ignore[operator]
    assert c.get("/read", base_url=BASE).json["permanent"] is True
    attrs = the_cookie(c.post("/permanent/0", base_url=BASE))
    assert attrs is not None and expires_in(attrs) is None
    assert c.get("/read", base_url=BASE).json == {
        "data": {"a": "1"},
        "accessed": impl.since_flask_31,
        "modified": False,
        "permanent": False,
    }


@pytest.mark.parametrize("view", ["/nothing", "/read"])
def test_refresh_each_request(impl: Impl, view: str) -> None:
    # SESSION_REFRESH_EACH_REQUEST (default True): "Control whether the cookie is sent
    # with every response when session.permanent is true [...] Non-permanent sessions
    # are not affected."
    c = impl.make(LIFETIME).test_client()
    c.post("/set/a/1", base_url=BASE)
    assert the_cookie(c.get(view, base_url=BASE)) is None  # not permanent
    c.post("/permanent/1", base_url=BASE)
    r = c.get(view, base_url=BASE)
    attrs = the_cookie(r)
    assert attrs is not None and 7200 - 5 <= expires_in(attrs) <= 7200 + 1  # type: ignore[operator]
    assert r.headers["Vary"] == "Cookie"  # a response that sets the cookie varies on it
    assert c.get("/read", base_url=BASE).json["data"] == {"a": "1"}  # the same session


@pytest.mark.parametrize("view", ["/nothing", "/read"])
def test_no_refresh(impl: Impl, view: str) -> None:
    # SESSION_REFRESH_EACH_REQUEST=False: a permanent session's cookie goes out only
    # when the session is modified (should_set_cookie).
    c = impl.make({**LIFETIME, "SESSION_REFRESH_EACH_REQUEST": False}).test_client()
    c.post("/set/a/1", base_url=BASE)
    assert the_cookie(c.post("/permanent/1", base_url=BASE)) is not None
    assert the_cookie(c.get(view, base_url=BASE)) is None
    attrs = the_cookie(c.post("/set/b/2", base_url=BASE))
    assert attrs is not None and 7200 - 5 <= expires_in(attrs) <= 7200 + 1  # type: ignore[operator]
    # setting session.modified = True counts as a change
    assert the_cookie(c.post("/flag-modified", base_url=BASE)) is not None
    assert c.get("/read", base_url=BASE).json["data"] == {"a": "1", "b": "2"}


def test_non_permanent_cookie_on_change(impl: Impl) -> None:
    # Flask's cookie carries the data: it goes out on every change. gatekeep's holds
    # the id: it goes out when the id changes (a difference); the data is kept either way.
    c = impl.make().test_client()
    assert the_cookie(c.post("/set/a/1", base_url=BASE)) is not None
    sent = the_cookie(c.post("/set/a/2", base_url=BASE)) is not None
    assert sent is not impl.gatekeep
    assert c.get("/read", base_url=BASE).json["data"] == {"a": "2"}


def test_lifetime_ends_an_idle_session(impl: Impl) -> None:
    # PERMANENT_SESSION_LIFETIME: Flask refuses a cookie signed longer ago than this;
    # gatekeep's store ends a session idle this long. Either way: a fresh session.
    c = impl.make({"PERMANENT_SESSION_LIFETIME": 1}).test_client()
    c.post("/set/a/1", base_url=BASE)
    assert c.get("/read", base_url=BASE).json["data"] == {"a": "1"}
    time.sleep(2.05)  # Flask's check counts whole seconds: age > 1 needs 2 of them
    assert c.get("/read", base_url=BASE).json["data"] == {}


# -- keys --------------------------------------------------------------------------------


def test_tampered_cookie_gives_a_fresh_session(impl: Impl) -> None:
    app = impl.make()
    c = app.test_client()
    value = the_cookie(c.post("/set/a/1", base_url=BASE))[""]  # type: ignore[index]
    bad = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    other = app.test_client(use_cookies=False)
    r = other.get("/read", base_url=BASE, headers={"Cookie": f"session={bad}"})
    assert r.status_code == 200 and r.json["data"] == {}
    r = other.get("/read", base_url=BASE, headers={"Cookie": f"session={value}"})
    assert r.json["data"] == {"a": "1"}


def test_secret_key_fallbacks(impl: Impl) -> None:
    # SECRET_KEY_FALLBACKS (Flask 3.1): old keys still verify; SECRET_KEY signs.
    old = impl.make({"SECRET_KEY": "old"})
    value = the_cookie(old.test_client().post("/set/a/1", base_url=BASE))[""]  # type: ignore[index]
    rotated = impl.make({"SECRET_KEY": "new", "SECRET_KEY_FALLBACKS": ["old"]})
    c = rotated.test_client(use_cookies=False)
    r = c.get("/read", base_url=BASE, headers={"Cookie": f"session={value}"})
    assert r.json["data"] == ({"a": "1"} if impl.since_flask_31 else {})  # 3.0: no fallbacks
    r = (
        impl.make({"SECRET_KEY": "new"})
        .test_client(use_cookies=False)
        .get("/read", base_url=BASE, headers={"Cookie": f"session={value}"})
    )
    assert r.json["data"] == {}


# -- the session object ----------------------------------------------------------------------


def test_json_dumps(impl: Impl) -> None:
    # The session is a dict (SessionInterface: "We recommend just subclassing a dict").
    c = impl.make().test_client()
    c.post("/set/a/1", base_url=BASE)
    r = c.get("/json", base_url=BASE)
    assert r.status_code == 200 and json.loads(r.get_data(as_text=True)) == {"a": "1"}
    with c.session_transaction(base_url=BASE) as s:
        assert json.loads(json.dumps(s)) == {"a": "1"}
        assert isinstance(s, dict)


# -- gatekeep's own behaviour where it differs ------------------------------------------------


def test_cookie_holds_only_a_signed_id(gatekeep_impl: Impl) -> None:
    c = gatekeep_impl.make().test_client()
    small = the_cookie(c.post("/set/a/1", base_url=BASE))[""]  # type: ignore[index]
    c.post("/set/secret/" + "s3cr3t" * 50, base_url=BASE)
    value = c.get_cookie("session", domain="example.com").value  # type: ignore[union-attr]
    assert value == small and "s3cr3t" not in value and len(value) < 120


def test_interface_builds_its_store_from_the_config() -> None:
    # Without a store, the interface builds one whose idle timeout is
    # PERMANENT_SESSION_LIFETIME.
    app = Flask(__name__)
    app.config.update(SECRET_KEY="conformance", PERMANENT_SESSION_LIFETIME=1)
    GatekeepSessionInterface().init_app(app)
    c = add_views(app).test_client()
    c.post("/set/a/1", base_url=BASE)
    time.sleep(0.5)
    assert c.get("/read", base_url=BASE).json["data"] == {"a": "1"}  # used: extended
    time.sleep(0.6)
    assert c.get("/read", base_url=BASE).json["data"] == {"a": "1"}
    time.sleep(1.1)
    assert c.get("/read", base_url=BASE).json["data"] == {}


@pytest.mark.parametrize("permanent", [False, True])
def test_a_cookie_signed_with_an_old_key_is_signed_again(
    gatekeep_impl: Impl, permanent: bool
) -> None:
    # So that the old key can be retired. (Flask's cookie session sends it again only
    # when it changes, or is permanent and refreshed.)
    old = gatekeep_impl.make({"SECRET_KEY": "old"}).test_client()
    old.post("/set/a/1", base_url=BASE)
    if permanent:
        old.post("/permanent/1", base_url=BASE)
    value = old.get_cookie("session", domain="example.com").value  # type: ignore[union-attr]
    rotated = gatekeep_impl.make(
        {
            "SECRET_KEY": "new",
            "SECRET_KEY_FALLBACKS": ["old"],
            "SESSION_REFRESH_EACH_REQUEST": False,
        }
    )
    c = rotated.test_client(use_cookies=False)
    r = c.get("/read", base_url=BASE, headers={"Cookie": f"session={value}"})
    attrs = the_cookie(r)
    assert r.json["data"] == {"a": "1"} and attrs is not None and attrs[""] != value
    assert (expires_in(attrs) is not None) == permanent
    # the new value works without the old key
    r = (
        gatekeep_impl.make({"SECRET_KEY": "new"})
        .test_client(use_cookies=False)
        .get("/read", base_url=BASE, headers={"Cookie": f"session={attrs['']}"})
    )
    assert r.json == {
        "data": {"a": "1"},
        "accessed": True,
        "modified": False,
        "permanent": permanent,
    }
    # and a cookie already signed with the current key is not sent again
    r = c.get("/read", base_url=BASE, headers={"Cookie": f"session={attrs['']}"})
    assert the_cookie(r) is None


def test_new(gatekeep_impl: Impl) -> None:
    app = gatekeep_impl.make()

    @app.get("/new")
    def new() -> ResponseReturnValue:
        return jsonify(new=session.new, n=session.get("n"))

    @app.post("/n")
    def n() -> ResponseReturnValue:
        session["n"] = 1
        return jsonify(new=session.new)

    c = app.test_client()
    assert c.get("/new", base_url=BASE).json["new"] is True
    assert c.post("/n", base_url=BASE).json["new"] is True
    assert c.get("/new", base_url=BASE).json == {"new": False, "n": 1}


def test_refresh_of_an_untouched_request_costs_no_round_trip(
    gatekeep_impl: Impl, servers: Any, prefix: str
) -> None:
    # Refreshing the cookie of a request that never used the session neither asks the
    # store nor moves the server's idle deadline; a request that reads it asks the store,
    # and moves the deadline only once a tenth of the idle timeout has passed since it
    # last moved (as the ASGI middleware; tests/integrations/test_flask_sessions.py
    # test_a_read_touches_only_when_due has the touch).
    backend = (
        None
        if gatekeep_impl.name == "memory"
        else RedisBackend(servers.get(gatekeep_impl.name).url)
    )
    store = SessionStore(backend, prefix=prefix, idle_timeout=3600, absolute_timeout=7200)
    calls: list[Any] = []
    inner = store.executor

    class Counting:
        def run(self, batch: Any, now: Any) -> Any:
            calls.append(batch)
            return inner.run(batch, now)

    store.executor = Counting()  # type: ignore[assignment]
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "conformance"
    GatekeepSessionInterface(store).init_app(app)
    add_views(app)
    c = app.test_client()
    c.post("/set/a/1", base_url=BASE)
    c.post("/permanent/1", base_url=BASE)
    value = c.get_cookie("session", domain="example.com").value  # type: ignore[union-attr]
    sid = app.session_interface.open_session(  # type: ignore[union-attr]
        app, app.test_request_context(headers={"Cookie": f"session={value}"}).request
    ).id
    seen = store.meta(sid).last_seen_at  # type: ignore[union-attr]
    time.sleep(0.01)
    calls.clear()
    attrs = the_cookie(c.get("/nothing", base_url=BASE))
    assert calls == []
    assert attrs is not None and attrs[""] == value and 3590 <= expires_in(attrs) <= 3600  # type: ignore[operator]
    assert store.meta(sid).last_seen_at == seen  # type: ignore[union-attr]
    calls.clear()
    attrs = the_cookie(c.get("/read", base_url=BASE))
    assert attrs is not None and attrs[""] == value and len(calls) == 1  # the read alone
    assert store.meta(sid).last_seen_at == seen  # type: ignore[union-attr]  # not due
    if backend is not None:
        backend.close()

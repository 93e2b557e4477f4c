"""The Django session engine: the SessionBase contract, django.contrib.auth log-in /
log-out / key rotation through Django's test clients and a real User, on the
in-process store and on real servers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import django
import pytest
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import UpdateError
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django_setup import migrate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeep import RedisBackend
from gatekeep.django import sessions as engine
from gatekeep.django.conf import build_session_store
from gatekeep.sessions import SessionStore as GatekeepStore
from gatekeep.sessions import is_session_id
from gatekeep.testing import free_port

ENGINE = "gatekeep.django.sessions"
COOKIE = "sessionid"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
#: Django 5.0 added the async session API (SessionBase.aget, aset, ...) and
#: django.contrib.auth.alogin / alogout; Django 4.2 (the floor) has neither.
needs_async_api = pytest.mark.skipif(
    django.VERSION < (5, 0), reason="Django's async session API came in Django 5.0"
)
STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("valkey", id="valkey", marks=pytest.mark.redis),
]


# -- views -----------------------------------------------------------------------------


def do_login(request: HttpRequest) -> JsonResponse:
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return JsonResponse({"error": "bad credentials"}, status=401)
    login(request, user)
    return JsonResponse({"user": user.get_username()})


def do_logout(request: HttpRequest) -> JsonResponse:
    logout(request)
    return JsonResponse({"ok": True})


def counter(request: HttpRequest) -> JsonResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return JsonResponse({"n": request.session["n"]})


def whoami(request: HttpRequest) -> JsonResponse:
    user = request.user.get_username() if request.user.is_authenticated else None
    return JsonResponse({"user": user, "n": request.session.get("n")})


def expiry(request: HttpRequest, seconds: int) -> JsonResponse:
    request.session.set_expiry(seconds)
    return JsonResponse({"age": request.session.get_expiry_age()})


async def alogin_view(request: HttpRequest) -> JsonResponse:
    from django.contrib.auth import alogin  # Django 5.0

    user = await User.objects.aget(username=request.GET["username"])
    await alogin(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return JsonResponse({"user": user.get_username()})


async def alogout_view(request: HttpRequest) -> JsonResponse:
    from django.contrib.auth import alogout  # Django 5.0

    await alogout(request)
    return JsonResponse({"ok": True})


async def acounter(request: HttpRequest) -> JsonResponse:
    n = await request.session.aget("n", 0) + 1
    await request.session.aset("n", n)
    return JsonResponse({"n": n})


def boom(request: HttpRequest) -> HttpResponse:
    request.session["lost"] = True
    return HttpResponse("boom", status=503)


urlpatterns = [
    path("login/", do_login),
    path("logout/", do_logout),
    path("counter/", counter),
    path("whoami/", whoami),
    path("expiry/<int:seconds>/", expiry),
    path("alogin/", alogin_view),
    path("alogout/", alogout_view),
    path("acounter/", acounter),
    path("boom/", boom),
]


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, servers: Any, prefix: str) -> Iterator[GatekeepStore]:
    backend = None if request.param == "memory" else RedisBackend(servers.get(request.param).url)
    gk = GatekeepStore(backend, prefix=prefix, idle_timeout=3600, absolute_timeout=7200)
    with override_settings(
        ROOT_URLCONF=__name__,
        SESSION_ENGINE=ENGINE,
        MIDDLEWARE=MIDDLEWARE,
        GATEKEEP={"sessions": {"store": gk}},
    ):
        yield gk
    if backend is not None:
        backend.close()


@pytest.fixture
async def astore(store: GatekeepStore) -> Any:
    yield store
    await store.aclose()


@pytest.fixture
def alice(db: None) -> User:
    user, _ = User.objects.get_or_create(username="alice")
    user.set_password("wonderland")
    user.save()
    User.objects.get_or_create(username="bob")
    return user


@pytest.fixture
def db() -> None:
    migrate()


def pttl_ms(store: GatekeepStore, key: str) -> int | None:
    """The key's TTL on a real server (None for the in-process store)."""
    if store.backend is None:
        return None
    return int(store.backend.client.pttl(store.key(key)))


# -- the SessionBase contract, directly -------------------------------------------------------


def test_contract(store: GatekeepStore) -> None:
    s = engine.SessionStore()
    assert s.session_key is None and s.is_empty()
    s["cart"] = ["apple"]
    s.save()
    key = s.session_key
    assert is_session_id(key) and s.exists(key)
    assert s.get_expiry_age() == 3600 and s.get_session_cookie_age() == 3600
    ttl = pttl_ms(store, key)
    assert ttl is None or 3_590_000 < ttl <= 3_600_000

    again = engine.SessionStore(key)
    assert again["cart"] == ["apple"] and again.session_key == key
    again["cart"].append("pear")
    again["other"] = {"a": 1}
    again.save()
    assert dict(engine.SessionStore(key).items()) == {"cart": ["apple", "pear"], "other": {"a": 1}}

    # cycle_key: the data moves to a new key, the old one stops working at once
    again.cycle_key()
    new = again.session_key
    assert new != key and new[:4] == key[:4] and again.modified
    assert not s.exists(key) and s.exists(new)
    assert engine.SessionStore(new)["other"] == {"a": 1}
    assert engine.SessionStore(key).load() == {}

    # flush: data and key gone
    again.flush()
    assert again.session_key is None and not s.exists(new) and again.is_empty()

    # delete by key; a save afterwards is an UpdateError (not a resurrection)
    t = engine.SessionStore()
    t.create()
    assert t.modified and t.exists(t.session_key) and t.load() == {}
    other = engine.SessionStore(t.session_key)
    other["x"] = 1
    t.delete(t.session_key)
    with pytest.raises(UpdateError):
        other.save()
    assert not t.exists(other.session_key or t.session_key)

    # must_create: a new session under a key the store draws, never one from outside
    u = engine.SessionStore(new_key := store.new().id or "A" * 47)
    u["k"] = "v"
    u.save(must_create=True)
    assert u.session_key != new_key and u.exists(u.session_key)

    assert engine.SessionStore.clear_expired() is None


def test_keys_the_store_did_not_draw(store: GatekeepStore) -> None:
    for bad in ["", "short", "x" * 32, "a" * 47 + "=", "../" * 20, None]:
        s = engine.SessionStore(bad)
        assert s.session_key is None and s.load() == {} and not s.exists(bad or "")
    # a well-formed key that was never stored: empty, and never adopted
    s = engine.SessionStore("abcd" + "e" * 43)
    assert s.get("x") is None and s.session_key is None
    s["x"] = 1
    s.save()
    assert s.session_key != "abcd" + "e" * 43


def test_json_only_and_size(store: GatekeepStore) -> None:
    s = engine.SessionStore()
    s["when"] = {1, 2}
    with pytest.raises(TypeError, match="JSON"):
        s.save()
    s = engine.SessionStore()
    s[3] = "int key"
    with pytest.raises(TypeError, match="keys must be str"):
        s.save()
    s = engine.SessionStore()
    s["t"] = (1, 2)  # a tuple comes back a list, as with Django's JSONSerializer
    s.save()
    assert engine.SessionStore(s.session_key)["t"] == [1, 2]


def test_expiry(store: GatekeepStore) -> None:
    s = engine.SessionStore()
    s["a"] = 1
    s.set_expiry(600)
    s.save()
    assert s.get_expiry_age() == 600
    ttl = pttl_ms(store, s.session_key)
    assert ttl is None or 590_000 < ttl <= 600_000
    # longer than the default: the key lives that long, reads do not shorten it
    s2 = engine.SessionStore(s.session_key)
    s2.set_expiry(5000)
    s2.save()
    assert engine.SessionStore(s.session_key)["a"] == 1
    ttl = pttl_ms(store, s.session_key)
    assert ttl is None or 4_990_000 < ttl <= 5_000_000
    # never past the absolute timeout (7200)
    s3 = engine.SessionStore(s.session_key)
    s3.set_expiry(10**9)
    s3.save()
    ttl = pttl_ms(store, s.session_key)
    assert ttl is None or 7_100_000 < ttl <= 7_200_000
    # a timedelta / datetime expiry
    s4 = engine.SessionStore(s.session_key)
    s4.set_expiry(timedelta(seconds=900))
    s4.save()
    assert 890 <= engine.SessionStore(s.session_key).get_expiry_age() <= 900
    ttl = pttl_ms(store, s.session_key)
    assert ttl is None or 880_000 < ttl <= 900_000
    # browser-close sessions keep the default server-side age
    s5 = engine.SessionStore(s.session_key)
    s5.set_expiry(0)
    s5.save()
    assert s5.get_expire_at_browser_close() and s5.get_expiry_age() == 3600
    # an expiry in the past ends the session
    s6 = engine.SessionStore(s.session_key)
    s6.set_expiry(timedelta(seconds=-5))
    s6.save()
    assert not s6.exists(s.session_key)


def test_shorter_expiry_really_expires(store: GatekeepStore) -> None:
    """A session saved with the default age, then set_expiry(1): gone a second later
    (the TTL is shortened, though the store would otherwise keep an hour)."""
    s = engine.SessionStore()
    s["a"] = 1
    s.save()
    again = engine.SessionStore(s.session_key)
    again.set_expiry(1)
    again.save()
    ttl = pttl_ms(store, s.session_key)
    assert ttl is None or ttl <= 1000
    assert again.exists(s.session_key)
    time.sleep(1.1)
    assert not again.exists(s.session_key)
    assert engine.SessionStore(s.session_key).load() == {}


def test_save_without_changes_extends(store: GatekeepStore) -> None:
    """SESSION_SAVE_EVERY_REQUEST: a save with nothing changed still refreshes the TTL."""
    s = engine.SessionStore()
    s["a"] = 1
    s.set_expiry(2)
    s.save()
    time.sleep(0.3)
    again = engine.SessionStore(s.session_key)
    assert again["a"] == 1
    again.save()
    ttl = pttl_ms(store, s.session_key)
    assert ttl is None or ttl > 1900
    assert again.exists(s.session_key)


def test_concurrent_changes_both_persist(store: GatekeepStore) -> None:
    s = engine.SessionStore()
    s["base"] = 0
    s.save()
    a, b = engine.SessionStore(s.session_key), engine.SessionStore(s.session_key)
    assert a.get("base") == b.get("base") == 0  # both loaded before either saves
    a["x"] = 1
    b["y"] = 2
    a.save(), b.save()
    assert dict(engine.SessionStore(s.session_key).items()) == {"base": 0, "x": 1, "y": 2}


@needs_async_api
async def test_async_contract(astore: GatekeepStore) -> None:
    s = engine.SessionStore()
    await s.aset("n", 1)
    await s.asave()
    key = s.session_key
    assert is_session_id(key) and await s.aexists(key)
    t = engine.SessionStore(key)
    assert await t.aget("n") == 1
    await t.aset_expiry(300)
    assert await t.aget_expiry_age() == 300
    await t.asave()
    ttl = pttl_ms(astore, key)
    assert ttl is None or 290_000 < ttl <= 300_000
    await t.acycle_key()
    assert t.session_key != key and not await t.aexists(key)
    assert await engine.SessionStore(t.session_key).aget("n") == 1
    u = engine.SessionStore()
    await u.acreate()
    assert await u.aexists(u.session_key)
    await u.adelete()
    assert not await u.aexists(u.session_key)
    stale = engine.SessionStore(t.session_key)
    assert await stale.aget("n") == 1  # loaded into the instance
    await t.aflush()
    assert t.session_key is None and not await t.aexists(stale.session_key)
    await stale.aset("x", 1)
    with pytest.raises(UpdateError):
        await stale.asave()
    assert await engine.SessionStore.aclear_expired() is None


# -- django.contrib.auth through the test clients ----------------------------------------------


def test_login_rotates_logout_destroys(store: GatekeepStore, alice: User) -> None:
    c = Client()
    assert c.get("/counter/").json() == {"n": 1}
    anon = c.cookies[COOKIE].value
    assert is_session_id(anon) and c.cookies[COOKIE]["httponly"]
    assert c.get("/counter/").json() == {"n": 2}
    assert c.cookies[COOKIE].value == anon  # no new key while nothing changes hands

    r = c.post("/login/", {"username": "alice", "password": "wonderland"})
    assert r.json() == {"user": "alice"}
    authed = c.cookies[COOKIE].value
    assert authed != anon and is_session_id(authed)
    assert not engine.SessionStore().exists(anon)  # the pre-login key is dead
    assert c.get("/whoami/").json() == {"user": "alice", "n": 2}  # data kept
    assert [s.id_hash for s in store.sessions_of(str(alice.pk))]  # indexed by user

    # the old (pre-login) cookie is worthless now
    old = Client()
    old.cookies[COOKIE] = anon
    assert old.get("/whoami/").json() == {"user": None, "n": None}

    r = c.post("/logout/")
    assert r.cookies[COOKIE]["max-age"] == 0 and c.cookies[COOKIE].value == ""
    assert not engine.SessionStore().exists(authed)
    replay = Client()
    replay.cookies[COOKIE] = authed
    assert replay.get("/whoami/").json() == {"user": None, "n": None}
    assert store.sessions_of(str(alice.pk)) == []


def test_login_as_someone_else_flushes(store: GatekeepStore, alice: User) -> None:
    bob = User.objects.get(username="bob")
    bob.set_password("builder")
    bob.save()
    c = Client()
    c.post("/login/", {"username": "alice", "password": "wonderland"})
    c.get("/counter/")
    first = c.cookies[COOKIE].value
    c.post("/login/", {"username": "bob", "password": "builder"})
    assert c.cookies[COOKIE].value != first
    assert c.get("/whoami/").json() == {"user": "bob", "n": None}  # alice's data gone
    assert not engine.SessionStore().exists(first)


def test_log_out_everywhere(store: GatekeepStore, alice: User) -> None:
    devices = [Client() for _ in range(3)]
    for d in devices:
        d.post("/login/", {"username": "alice", "password": "wonderland"})
    assert len(store.sessions_of(str(alice.pk))) == 3
    assert engine.get_store() is store
    assert store.destroy_all(str(alice.pk)) == 3
    assert all(d.get("/whoami/").json()["user"] is None for d in devices)


def test_cookie_age_and_expiry_through_middleware(store: GatekeepStore, alice: User) -> None:
    c = Client()
    c.get("/counter/")
    assert c.cookies[COOKIE]["max-age"] == 3600
    r = c.get("/expiry/120/")
    assert r.json() == {"age": 120} and r.cookies[COOKIE]["max-age"] == 120
    ttl = pttl_ms(store, c.cookies[COOKIE].value)
    assert ttl is None or 110_000 < ttl <= 120_000


def test_5xx_not_saved(store: GatekeepStore) -> None:
    c = Client()
    r = c.get("/boom/")
    assert r.status_code == 503 and COOKIE not in r.cookies


@needs_async_api
async def test_async_login_logout(astore: GatekeepStore, alice: User) -> None:
    c = AsyncClient()
    assert (await c.get("/acounter/")).json() == {"n": 1}
    anon = c.cookies[COOKIE].value
    r = await c.get("/alogin/", {"username": "alice"})
    assert r.json() == {"user": "alice"}
    authed = c.cookies[COOKIE].value
    assert authed != anon and not await engine.SessionStore().aexists(anon)
    assert (await c.get("/acounter/")).json() == {"n": 2}
    await c.get("/alogout/")
    assert not await engine.SessionStore().aexists(authed)
    assert (await c.get("/acounter/")).json() == {"n": 1}


def test_store_down_never_500(prefix: str, alice: User) -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0")
    gk = GatekeepStore(backend, prefix=prefix)
    with override_settings(
        ROOT_URLCONF=__name__,
        SESSION_ENGINE=ENGINE,
        MIDDLEWARE=MIDDLEWARE,
        GATEKEEP={"sessions": {"store": gk}},
    ):
        c = Client()
        r = c.get("/counter/")
        assert r.status_code == 200 and r.json() == {"n": 1}
        c.cookies[COOKIE] = "abcd" + "x" * 43  # a well-formed key: the load fails
        assert c.get("/whoami/").status_code == 200
        assert c.get("/counter/").status_code == 200
        r = c.post("/login/", {"username": "alice", "password": "wonderland"})
        assert r.status_code == 200
        assert c.post("/logout/").status_code == 200
    backend.close()


# -- settings and checks -------------------------------------------------------------------


def test_settings() -> None:
    with override_settings(SESSION_COOKIE_AGE=600, GATEKEEP={"sessions": {"prefix": "x"}}):
        gk = build_session_store()
        assert gk.idle_us == 600_000_000 and gk.absolute_us == 30 * 86400 * 1_000_000
        assert gk.backend is None and gk.prefix.startswith("gk:x")
    gk = build_session_store({"url": "redis://127.0.0.1:1/0", "idle_timeout": 40 * 86400})
    assert isinstance(gk.backend, RedisBackend) and gk.absolute_us == gk.idle_us
    for bad, message in [
        ({"idle_timeout": -1}, "positive"),
        ({"url": 5}, "Redis URL"),
        ({"colour": "red"}, "unknown option"),
        ({"url": "redis://x", "backend": None}, "not both"),
        ({"store": "nope"}, "SessionStore"),
        ({"idle_timeout": 100, "absolute_timeout": 10}, "must not exceed"),
    ]:
        with pytest.raises(ImproperlyConfigured, match=message):
            build_session_store(bad)
    with (
        override_settings(GATEKEEP={"sessions": "redis://"}),
        pytest.raises(ImproperlyConfigured, match="must be a dict"),
    ):
        build_session_store()


def test_system_check() -> None:
    with override_settings(SESSION_ENGINE=ENGINE, GATEKEEP={"sessions": {"idle_timeout": 0}}):
        assert [m.id for m in run_checks()] == ["gatekeep.E003"]
    with override_settings(SESSION_ENGINE=ENGINE, GATEKEEP={"sessions": {"prefix": "ok"}}):
        assert run_checks() == []
    # the settings changed: the engine's store follows
    with override_settings(SESSION_ENGINE=ENGINE, GATEKEEP={"sessions": {"prefix": "one"}}):
        assert engine.get_store().prefix.startswith("gk:one")
    with override_settings(SESSION_ENGINE=ENGINE, GATEKEEP={"sessions": {"prefix": "two"}}):
        assert engine.get_store().prefix.startswith("gk:two")


# -- fuzz: no cookie value gives a 500 or someone else's session ----------------------------


@pytest.mark.parametrize("store", [STORES[0], STORES[1]], indirect=True)
def test_fuzz_cookies(store: GatekeepStore, alice: User) -> None:
    victim = Client()
    victim.post("/login/", {"username": "alice", "password": "wonderland"})
    victim.get("/counter/")
    key = victim.cookies[COOKIE].value
    anonymous = {"user": None, "n": None}
    i = st.integers(0, len(key) - 1)
    alphabet = 'ABCDEFabcdef0123456789-_.=;, "\\\x00é'
    values = st.one_of(
        st.text(max_size=300),
        st.text(alphabet=alphabet, max_size=120),
        i.map(lambda n: key[:n]),
        st.tuples(i, st.sampled_from(alphabet + "xyzXYZ")).map(
            lambda t: key[: t[0]] + t[1] + key[t[0] + 1 :]
        ),
        st.just(key.swapcase()),
        st.just(key + "x"),
        st.just(key[1:] + key[0]),
        st.just(" " + key + " "),
        st.just(f'"{key}"'),
    )

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(value=values)
    def check(value: str) -> None:
        # as a WSGI server hands a header over: its bytes, one character each (PEP 3333)
        header = f"{COOKIE}={value}".encode().decode("latin-1")
        r = Client().get("/whoami/", HTTP_COOKIE=header)
        assert r.status_code == 200
        if value.strip(' "') == key:
            return  # the victim's own cookie, spaced or quoted: the cookie parser's call
        assert r.json() == anonymous
        r = Client().get("/counter/", HTTP_COOKIE=header)
        assert r.status_code == 200 and r.json() == {"n": 1}
        assert r.cookies[COOKIE].value != key

    check()
    assert victim.get("/whoami/").json() == {"user": "alice", "n": 1}

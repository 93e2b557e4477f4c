"""Fuzzed cookies: never someone else's session, never a 500, never the store asked
about an id the server did not sign."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner

from gatekeep.sessions import SessionStore

from .apps import starlette_app
from .helpers import asgi_call

SECRET = "test-secret-key"


async def victim_and_attacker(store: SessionStore) -> tuple[str, str]:
    victim = await store.acreate({"owner": "victim"})
    app = starlette_app(store=store)
    r = await asgi_call(app, "/other")  # the attacker's own session
    return victim.id, r.cookie() or ""


def mutate(value: str, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "splice", "swap"]))
    if kind == "truncate":
        return value[: data.draw(st.integers(0, len(value)))]
    if kind == "flip":
        i = data.draw(st.integers(0, len(value) - 1))
        return value[:i] + data.draw(st.characters(codec="latin-1")) + value[i + 1 :]
    if kind == "insert":
        i = data.draw(st.integers(0, len(value)))
        return value[:i] + data.draw(st.text(max_size=5)) + value[i:]
    if kind == "splice":
        parts = value.split(".")
        middle = data.draw(st.text("abcdefABCDEF0123456789_-", max_size=8))
        return ".".join([*parts[:1], middle, *parts[2:]])
    a, b = value.split(".", 1)
    return b + "." + a


def forgeries(victim: str, attacker: str) -> list[str]:
    sid, ts, sig = attacker.split(".")
    return [
        victim,  # the raw id
        f"{victim}.{ts}.{sig}",  # attacker's signature on the victim id
        TimestampSigner(b"wrong-key", salt="gatekeep.session").sign(victim).decode(),
        TimestampSigner(SECRET.encode()).sign(victim).decode(),  # wrong salt / digest
        f"{victim[:4]}{sid[4:]}.{ts}.{sig}",
    ]


async def check(app, header: bytes | list[bytes]) -> None:
    r = await asgi_call(app, "/", header)
    assert r.status == 200
    assert json.loads(r.body).get("owner") != "victim"


@settings(max_examples=150, deadline=None)
@given(data=st.data())
async def test_fuzzed_cookies_memory(data):
    store = SessionStore(idle_timeout=100, absolute_timeout=1000)
    await run_fuzz(store, data)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_fuzzed_cookies_real_server(server, prefix, data):
    from gatekeep import RedisBackend

    store = SessionStore(RedisBackend(server.url), prefix=prefix)
    try:
        await run_fuzz(store, data)
    finally:
        await store.aclose()
        store.backend.close()  # type: ignore[union-attr]


async def run_fuzz(store: SessionStore, data: st.DataObject) -> None:
    victim, attacker = await victim_and_attacker(store)
    app = starlette_app(store=store)
    source = data.draw(st.sampled_from(["bytes", "mutation", "forgery", "duplicates"]))
    if source == "bytes":
        header: bytes | list[bytes] = b"session=" + data.draw(st.binary(max_size=300))
    elif source == "mutation":
        header = ("session=" + mutate(attacker, data)).encode("utf-8", "surrogateescape")
    elif source == "forgery":
        header = ("session=" + data.draw(st.sampled_from(forgeries(victim, attacker)))).encode()
    else:
        many = data.draw(
            st.lists(
                st.sampled_from([attacker, *forgeries(victim, attacker), "x", ""]),
                min_size=2,
                max_size=12,
            )
        )
        header = [f"session={v}".encode() for v in many]
    await check(app, header)

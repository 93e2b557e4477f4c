"""``gatekeep inspect`` on session keys: metadata, read-only; the data only when asked."""

from __future__ import annotations

import io
import json
import re
import time

import pytest
import redis

from gatekeep import RedisBackend
from gatekeep.cli import main
from gatekeep.sessions import SessionStore, id_hash

pytestmark = pytest.mark.redis


def inspect(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    rc = main(["inspect", *argv], out=out)
    return rc, out.getvalue()


@pytest.fixture
def stored(server, prefix):
    backend = RedisBackend(server.url)
    store = SessionStore(
        backend, prefix=prefix, idle_timeout=600, absolute_timeout=3600, metrics=None
    )
    session = store.create({"cart": ["apple"], "secret": "do-not-show"}, user_id="alice")
    yield store, session, redis.Redis.from_url(server.url)
    backend.close()


def test_inspect_session_metadata_without_the_data(stored, server):
    store, session, client = stored
    key = store.key(session.id)
    time.sleep(0.01)
    before = (client.dump(key), client.pttl(key))

    rc, text = inspect(key, "--url", server.url)
    assert rc == 0, text
    assert re.search(r"^session +live$", text, re.M)
    assert re.search(r"^created +20\d\d-", text, re.M)
    assert re.search(r"^last seen +20\d\d-", text, re.M)
    m = re.search(r"^idle expiry +in ([\d.]+) s$", text, re.M)
    assert m and 590 < float(m[1]) <= 600
    assert f"id hash {id_hash('alice')}" in text
    assert "do-not-show" not in text and "apple" not in text and "alice" not in text
    assert "--show-data" in text

    rc, text = inspect(key, "--url", server.url, "--json")
    info = json.loads(text)["session"]
    assert rc == 0 and info["state"] == "live" and "data" not in info
    assert info["created"] == session.created_at.isoformat()
    assert info["user_id_hash"] == id_hash("alice") and info["id_hash"] == id_hash(session.id)

    # read-only: byte for byte the same record, the TTL only ran down
    dump, pttl = client.dump(key), client.pttl(key)
    assert dump == before[0] and pttl <= before[1]


def test_inspect_session_data_when_asked(stored, server):
    store, session, client = stored
    key = store.key(session.id)
    before = client.dump(key)
    rc, text = inspect(key, "--url", server.url, "--show-data")
    assert rc == 0
    assert re.search(r"""^data\['cart'\] +\["apple"\]$""", text, re.M)
    assert "do-not-show" in text
    rc, text = inspect(key, "--url", server.url, "--show-data", "--json")
    assert json.loads(text)["session"]["data"] == {"cart": ["apple"], "secret": "do-not-show"}
    assert client.dump(key) == before


def test_inspect_destroyed_missing_and_listed_sessions(stored, server, prefix):
    store, session, _client = stored
    other = store.create({"n": 1})
    store.destroy(session.id)  # strict store: the key is gone
    rc, text = inspect(store.key(session.id), "--url", server.url)
    assert rc == 1 and "no live session" in text and re.search(r"^session +none$", text, re.M)

    lenient = SessionStore(store.backend, prefix=prefix, strict=False, metrics=None)
    gone = lenient.create({"n": 1})
    lenient.destroy(gone.id)  # leaves a tombstone
    rc, text = inspect(lenient.key(gone.id), "--url", server.url, "--json")
    assert rc == 1 and json.loads(text)["session"]["state"] == "destroyed (a tombstone)"

    rc, text = inspect("--pattern", f"gk:{prefix}:s:*", "--url", server.url)
    assert rc == 0 and "session, live" in text and other.id[4:] in text

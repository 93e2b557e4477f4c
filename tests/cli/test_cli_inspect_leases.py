"""``gatekeep inspect`` on a concurrency limit's lease set: its holders, read-only."""

from __future__ import annotations

import io
import json
import re

import pytest
import redis

from gatekeep import ConcurrencyLimiter, RedisBackend
from gatekeep.cli import main


def inspect(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    rc = main(["inspect", *argv], out=out)
    return rc, out.getvalue()


@pytest.mark.redis
def test_inspect_shows_who_holds_the_slots(server, prefix):
    limiter = ConcurrencyLimiter(3, backend=RedisBackend(server.url), prefix=prefix, ttl=20.0)
    key = limiter.lease_key("export:{42}")
    client = redis.Redis.from_url(server.url)
    with limiter.slot("export:{42}") as one, limiter.slot("export:{42}"):
        before = client.zrange(key, 0, -1, withscores=True)
        rc, text = inspect(key, "--url", server.url, "--json")
        assert rc == 0
        leases = json.loads(text)["leases"]
        assert (leases["key"], leases["app_prefix"], leases["held"]) == ("export:{42}", prefix, 2)
        assert one.lease.id in {h["lease"] for h in leases["holders"]}
        assert all(19 < h["lapses_in"] <= 20 for h in leases["holders"])
        rc, text = inspect(key, "--url", server.url)
        assert rc == 0 and re.search(r"slots held +2\n", text) and one.lease.id in text
        rc, text = inspect("--pattern", f"gk:{prefix}:*", "--url", server.url)
        assert "concurrency limit, 2 slot(s) held" in text
        assert client.zrange(key, 0, -1, withscores=True) == before  # nothing written
    client.close()

"""The least-privilege ACL user that the README (Availability) recommends works."""

from __future__ import annotations

import pytest
import redis

from gatekeep import ALGORITHMS, Limiter
from gatekeep.backends.connect import connect

pytestmark = pytest.mark.redis

ACL = (
    "~gk:*",
    "resetchannels",
    "+@read",
    "+@write",
    "+@scripting",
    "+time",
    "+ping",
    "-@dangerous",
    "-script|flush",
)


def test_recommended_acl_user(server, prefix):
    admin = redis.Redis(port=server.port)
    user = f"gk{prefix}"
    admin.execute_command("ACL", "SETUSER", user, "on", ">pw", *ACL)
    backend = connect(f"redis://{user}:pw@127.0.0.1:{server.port}/0")
    try:
        for algorithm in ALGORITHMS:
            limiter = Limiter(
                "2/minute; 5/hour", backend=backend, algorithm=algorithm, prefix=prefix
            )
            assert [limiter.hit("x").allowed for _ in range(3)] == [True, True, False]
            limiter.reset("x")
            admin.script_flush()  # the user's first call after this is EVAL
            assert limiter.hit("x").remaining == 1
            assert [d.remaining for d in limiter.hit_many(["a", "b"])] == [1, 1]
        for command in (("SET", "other", "1"), ("SCRIPT", "FLUSH"), ("FLUSHALL",)):
            with pytest.raises(redis.exceptions.NoPermissionError):
                backend.client.execute_command(*command)
    finally:
        backend.close()
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()

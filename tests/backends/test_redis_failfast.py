"""On a real server: the deadline holds, a timed-out script is not run twice
(redis-py #3554), NOSCRIPT after SCRIPT FLUSH is transparent, EVALSHA_RO."""

from __future__ import annotations

import inspect
import time
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gatekeep.backends.connect import connect
from gatekeep.scripts import Script

pytestmark = pytest.mark.redis

# Busy for `ARGV[1]` loop turns, then count one run: a non-idempotent script that
# outlives the client's read timeout. Turns, not the script's TIME: Valkey (8.1)
# answers TIME inside a script with the time the script started, so a loop on TIME
# would spin until the busy-script threshold (5 s) and end only then, when the server
# already answers BUSY to everything else (a re-sent EVAL too).
SLOW_INCR = Script.from_source(
    "slow_incr",
    """
local x = 0
for i = 1, tonumber(ARGV[1]) do x = x + i end
return redis.call('INCR', KEYS[1])
""",
)
#: Seconds the slow script should take: past the 0.25 s read timeout, and far from
#: the 5 s after which a server answers BUSY instead of running what is queued.
SLOW = 0.6
READ = Script.from_source("read", "return redis.call('GET', KEYS[1])")
WRITE = Script.from_source("write", "return redis.call('SET', KEYS[1], ARGV[1])")


_TURNS: dict[int, int] = {}

#: A connection that sends nothing before its first command: RESP2 (no HELLO, and no
#: CLIENT MAINT_NOTIFICATIONS, which newer redis-py sends with RESP3) and no CLIENT
#: SETINFO (``driver_info=None`` where redis-py has it, ``lib_name=None`` before).
_NO_HANDSHAKE: dict[str, Any] = {
    "protocol": 2,
    **(
        {"driver_info": None}
        if "driver_info" in inspect.signature(redis.Redis.__init__).parameters
        else {"lib_name": None, "lib_version": None}
    ),
}


def _turns(server, key: str) -> int:
    """Loop turns that keep ``server`` busy for about SLOW seconds, from the fastest of
    three short runs (a loaded machine then makes the script longer, not shorter)."""
    turns = _TURNS.get(server.port)
    if turns is None:
        probe, best = 2_000_000, float("inf")
        with redis.Redis(port=server.port) as client:
            for _ in range(3):
                started = time.perf_counter()
                client.execute_command("EVAL", SLOW_INCR.source, 1, key, probe)
                best = min(best, time.perf_counter() - started)
            client.delete(key)
        turns = _TURNS[server.port] = int(probe * SLOW / best)
    return turns


def _runs_after_timeout(client: redis.Redis, server, key: str) -> tuple[int, float]:
    turns = _turns(server, key)
    started = time.perf_counter()
    with pytest.raises(redis.TimeoutError):
        client.execute_command("EVAL", SLOW_INCR.source, 1, key, turns)
    elapsed = time.perf_counter() - started
    observer = redis.Redis(port=server.port)
    deadline = time.monotonic() + 5
    runs = 0
    while time.monotonic() < deadline:  # wait until the server is done with every copy
        try:
            runs = int(observer.get(key) or 0)
            time.sleep(0.45)
            if int(observer.get(key) or 0) == runs:
                break
        except redis.exceptions.BusyLoadingError:  # pragma: no cover
            time.sleep(0.05)
        except redis.ResponseError:  # BUSY: a script is running
            time.sleep(0.05)
    observer.close()
    return runs, elapsed


def test_a_timed_out_script_runs_once_with_gatekeeps_clients(server, prefix):
    backend = connect(server.url)  # 0.25 s, no retries
    runs, elapsed = _runs_after_timeout(backend.client, server, prefix + ":n")
    print(f"\ngatekeep client: TimeoutError after {elapsed * 1000:.0f} ms, script ran {runs}x")
    assert runs == 1
    assert elapsed < 0.25 + 0.15


def test_redis_py_retry_runs_it_again(server, prefix):
    # What gatekeep avoids: redis-py's Retry re-sends after the read timed out. One
    # retry without backoff shows it (the default, 3 retries with up to 10 s of
    # backoff, takes 8-13 s here and ran the script 2-4 times). The client's
    # connections send nothing before the command: the re-sent EVAL goes out at once
    # and waits behind the running script, whatever the script's length (a handshake
    # would wait for the script and time out first: the EVAL would not be re-sent).
    client = redis.Redis(
        port=server.port, socket_timeout=0.25, retry=Retry(NoBackoff(), 1), **_NO_HANDSHAKE
    )
    runs, elapsed = _runs_after_timeout(client, server, prefix + ":n")
    print(f"\nredis-py, 1 retry: TimeoutError after {elapsed * 1000:.0f} ms, script ran {runs}x")
    assert runs == 2
    client.close()


def test_noscript_after_flush_is_transparent(server, prefix):
    backend = connect(server.url)
    key = prefix + ":k"
    assert backend.eval(WRITE, [key], ["a"]) == b"OK"
    backend.client.script_flush()
    assert backend.eval(WRITE, [key], ["b"]) == b"OK"  # EVAL after NOSCRIPT
    backend.client.script_flush()
    assert backend.eval_ro(READ, [key], []) == b"b"  # EVAL_RO after NOSCRIPT
    assert backend.eval_ro(READ, [key], []) == b"b"  # EVALSHA_RO: now cached
    backend.client.script_flush()
    assert backend.eval_many(WRITE, [([key], ["c"]), ([key + "2"], ["d"])]) == [b"OK", b"OK"]
    with pytest.raises(redis.ResponseError, match=r"(?i)write"):
        backend.eval_ro(WRITE, [key], ["x"])  # read-only means read-only
    backend.close()


async def test_async_eval_ro_and_noscript(server, prefix):
    backend = connect(server.url)
    key = prefix + ":k"
    await backend.aeval(WRITE, [key], ["v"])
    await backend.aclient.script_flush()
    assert await backend.aeval_ro(READ, [key], []) == b"v"
    await backend.aclient.script_flush()
    assert await backend.aeval_many(WRITE, [([key], ["w"])]) == [b"OK"]
    await backend.aclose()


def test_connection_refused_fails_within_the_deadline(server_factory):
    dead = server_factory("redis")
    url = dead.url
    dead.stop()
    backend = connect(url, timeout=0.1)
    started = time.perf_counter()
    with pytest.raises(redis.ConnectionError):
        backend.eval(READ, ["k"], [])
    assert time.perf_counter() - started < 0.1
    assert Retry(NoBackoff(), 0) == backend.client.get_retry()

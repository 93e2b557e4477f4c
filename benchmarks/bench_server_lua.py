"""Server µs per limiter decision: gatekeep's scripts beside `limits`' strategies.

Redis runs scripts on one thread, so the server time of a decision bounds how many
decisions one shard serves. This starts its own throwaway redis-server (or
valkey-server) on a free port, then for every case: FLUSHALL, CONFIG RESETSTAT,
``--ops`` sequential calls over ``--keys`` keys, INFO commandstats. Interleaved
rounds, medians, ratios from the same run.

Two measures per operation:

- ``all``: usec summed over every command (the issue 12 measure). A command a
  script runs is counted twice there: in its own ``cmdstat_`` line and inside the
  EVALSHA's usec (``--probes`` shows it);
- ``evalsha``: the EVALSHA's usec alone, which already includes its commands: what
  the server's one thread spent on the decision.

``--ref REV`` also measures the scripts of git revision REV (its ``lua/`` folder), in
the same run: the A/B of a script change (the order of the cases is reversed every
round: which one runs first otherwise shows as a ~1 µs difference between two copies
of the same script). ``--probes`` adds the breakdown of where a
script's time goes (the fixed cost of EVALSHA, each command, the Lua around them).

    python benchmarks/bench_server_lua.py [--rounds 5] [--ops 2000] [--ref main] [--probes]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

import redis

from gatekeep import ALGORITHMS, Limiter
from gatekeep.scripts import limiter_script, lua_dir
from gatekeep.testing import ServerProcess, find_server

#: Commands the harness itself sends between cases: not part of a decision.
HARNESS = ("cmdstat_config", "cmdstat_info", "cmdstat_flushall", "cmdstat_script")

Op = Callable[[int], object]


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """``{command: (calls, usec)}`` since the last CONFIG RESETSTAT, harness excluded."""
    out = {}
    for name, stat in client.info("commandstats").items():
        name = "cmdstat_" + name if not name.startswith("cmdstat_") else name
        if not name.startswith(HARNESS):
            out[name.removeprefix("cmdstat_")] = (int(stat["calls"]), int(stat["usec"]))
    return out


def thread_cpu_ns(pid: int) -> int:
    """CPU ns the server's main thread has run (Linux schedstat; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except OSError:
        return 0


def measure(
    client: redis.Redis, op: Op, ops: int, pid: int
) -> tuple[float, float, float, dict[str, float]]:
    """(all usec, EVALSHA usec, main-thread CPU µs, per op; calls per op of each command)."""
    client.flushall()
    client.config_resetstat()
    cpu = thread_cpu_ns(pid)
    for i in range(ops):
        op(i)
    cpu = thread_cpu_ns(pid) - cpu
    stats = commandstats(client)
    total = sum(usec for _, usec in stats.values()) / ops
    evalsha = stats.get("evalsha", (0, 0))[1] / ops
    calls = {name: c / ops for name, (c, _) in stats.items()}
    return total, evalsha, cpu / ops / 1000, calls


def script_at(rev: str, name: str) -> str:
    """The limiter script ``name`` as revision ``rev`` assembled it (prelude, algorithm,
    driver: what ``gatekeep.scripts.limiter_script`` does)."""
    root = lua_dir().parent

    def show(part: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), "show", f"{rev}:lua/{part}.lua"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    return "\n".join((show("_prelude"), show(name), show("_driver")))


def gatekeep_op(
    client: redis.Redis, source: str, algorithm: str, rates: str, keys: int, cost: int = 1
) -> Op:
    """One decision per call, exactly as RedisBackend sends it (EVALSHA, server TIME)."""
    sha = client.script_load(source)
    lim = Limiter(rates, algorithm=algorithm)  # only for its plan: keys and parameters
    plan = lim.plan(None)
    names = [lim.keys(f"user{i}", plan) for i in range(keys)]
    args = ("", "hit", cost, *plan.flat)
    n = len(plan.flat) // 2

    def op(i: int) -> object:
        return client.evalsha(sha, n, *names[i % keys], *args)

    return op


def limits_ops(client: redis.Redis, port: int, rate: str, keys: int) -> dict[str, Op]:
    from limits import parse, storage, strategies

    item = parse(rate)
    store = storage.RedisStorage(f"redis://127.0.0.1:{port}")
    out: dict[str, Op] = {}
    for label, cls in (
        ("limits fixed window", strategies.FixedWindowRateLimiter),
        ("limits sliding window counter", strategies.SlidingWindowCounterRateLimiter),
        ("limits moving window", strategies.MovingWindowRateLimiter),
    ):
        strategy = cls(store)
        out[label] = lambda i, s=strategy: s.hit(item, f"user{i % keys}")
    return out


def probe_ops(client: redis.Redis, keys: int) -> dict[str, Op]:
    """Scripts that take a decision apart: the fixed cost, each command, the Lua."""
    tb = limiter_script("token_bucket").source
    state = "'600000 1790000000000000'"
    stub = (
        "local redis = {call = function(c) "
        "if c == 'TIME' then return {'1790000000', '123456'} "
        f"elseif c == 'GET' then return {state} else return 'OK' end end}}\n"
    )
    ensure = (
        "if redis.call('EXISTS', KEYS[1]) == 0 then "
        "redis.call('SET', KEYS[1], 'x', 'PX', 60000) end"
    )
    set_px = "redis.call('SET', KEYS[1], '600000 1790000000000000', 'PX', 60000)"
    set_keepttl = "redis.call('SET', KEYS[1], '600000 1790000000000000', 'KEEPTTL')"
    bodies = {
        "EVALSHA return 1": "return 1",
        "EVALSHA return 1, padded to the token bucket's size": "return 1\n--" + "x" * len(tb),
        "TIME": "redis.call('TIME') return 1",
        "TIME via pcall": "redis.pcall('TIME') return 1",
        "GET": "redis.call('GET', KEYS[1]) return 1",
        "SET PX": "redis.call('SET', KEYS[1], '600000 1790000000000000', 'PX', 60000) return 1",
        "PSETEX": "redis.call('PSETEX', KEYS[1], 60000, '600000 1790000000000000') return 1",
        # the steady state of a limiter key: it exists, with a TTL
        "EXISTS (a key with a TTL)": f"{ensure} return 1",
        "EXISTS + SET PX (a key with a TTL)": f"{ensure} {set_px} return 1",
        "EXISTS + SET KEEPTTL (a key with a TTL)": f"{ensure} {set_keepttl} return 1",
        "TIME + GET + SET PX": "redis.call('TIME') redis.call('GET', KEYS[1]) "
        "redis.call('SET', KEYS[1], '600000 1790000000000000', 'PX', 60000) return 1",
        "TIME + GET + SET PX, with a %d %d parse and format": (
            "local t = redis.call('TIME') local now = t[1] * 1000000 + t[2] "
            "local v = redis.call('GET', KEYS[1]) local a, b = 0, now "
            "if v then a, b = string.match(v, '^(%d+) (%d+)$') end "
            "redis.call('SET', KEYS[1], string.format('%d %d', a, b), 'PX', 60000) return 1"
        ),
        "token bucket, now passed (no TIME)": tb,
        "token bucket, commands stubbed (the Lua alone)": stub + tb,
    }
    lim = Limiter("100/minute")
    plan = lim.plan(None)
    names = [lim.keys(f"user{i}", plan)[0] for i in range(keys)]
    out: dict[str, Op] = {}
    for label, body in bodies.items():
        sha = client.script_load(body)
        now = "1790000000123456" if "now passed" in label else ""
        args = (now, "hit", 1, *plan.flat)
        out["probe: " + label] = lambda i, sha=sha, args=args: client.evalsha(
            sha, 1, names[i % keys], *args
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ops", type=int, default=2000, help="calls per case per round")
    ap.add_argument("--keys", type=int, default=100, help="keys the calls cycle through")
    ap.add_argument("--rate", default="100/minute", help="never reached: no call denies")
    ap.add_argument("--ref", help="also measure the scripts of this git revision")
    ap.add_argument("--probes", action="store_true", help="where a script's time goes")
    ap.add_argument("--server", choices=("redis", "valkey"), default="redis")
    ap.add_argument("--only", help="only cases whose name contains this")
    ap.add_argument(
        "--realtime",
        action="store_true",
        help="run the server SCHED_FIFO (chrt, needs root): on a busy machine, other "
        "processes then do not preempt it mid-command and inflate its usec",
    )
    args = ap.parse_args()

    server = ServerProcess.start(find_server(args.server))
    try:
        if args.realtime:
            subprocess.run(["chrt", "-f", "-p", "1", str(server.pid)], check=True)
        client = redis.Redis(port=server.port)
        version = client.info("server")["redis_version"]
        ops = limits_ops(client, server.port, args.rate, args.keys)
        two = f"{args.rate}; 1000/hour"
        for name in ALGORITHMS:
            src = limiter_script(name).source
            ops[f"gatekeep {name}"] = gatekeep_op(client, src, name, args.rate, args.keys)
            if args.ref:
                old = script_at(args.ref, name)
                ops[f"gatekeep@{args.ref} {name}"] = gatekeep_op(
                    client, old, name, args.rate, args.keys
                )
        ops["gatekeep token_bucket, two limits"] = gatekeep_op(
            client, limiter_script("token_bucket").source, "token_bucket", two, args.keys
        )
        if args.ref:
            ops[f"gatekeep@{args.ref} token_bucket, two limits"] = gatekeep_op(
                client, script_at(args.ref, "token_bucket"), "token_bucket", two, args.keys
            )
        if args.probes:
            ops.update(probe_ops(client, args.keys))
        if args.only:
            keep = ("limits fixed window", "limits sliding window counter")
            ops = {k: v for k, v in ops.items() if args.only in k or k in keep}

        for op in ops.values():  # warm up
            measure(client, op, min(args.ops, 200), server.pid)
        samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in ops}
        calls: dict[str, dict[str, float]] = {}
        order = list(ops.items())
        for _ in range(args.rounds):
            order.reverse()  # a case measured right after another is ~1 µs cheaper
            for name, op in order:
                *figures, calls[name] = measure(client, op, args.ops, server.pid)
                samples[name].append(tuple(figures))  # type: ignore[arg-type]
        med = {
            k: [statistics.median(col) for col in zip(*v, strict=True)] for k, v in samples.items()
        }
    finally:
        server.stop()

    fixed, sliding = med["limits fixed window"], med["limits sliding window counter"]
    print(
        f"# server µs per decision: {Path(server.binary).name} {version}, rate {args.rate}, "
        f"{args.keys} keys, {args.rounds} rounds x {args.ops} sequential calls, medians"
        + (", server SCHED_FIFO" if args.realtime else "")
    )
    print()
    print("all: usec of every command (issue 12's measure; a script's commands count twice)")
    print("evalsha: the EVALSHA's usec alone (its commands included once)")
    print("cpu: the server main thread's CPU time per call (network I/O included)")
    print("xF, xS: that measure over limits fixed window's, sliding window counter's")
    print()
    print(
        "| operation | all µs | xF | xS | evalsha µs | xF | xS | cpu µs | xF | xS "
        "| commands per call |"
    )
    print("|---|" + "---:|" * 9 + "---|")
    for name in ops:
        cells = []
        for col in range(3):
            v = med[name][col]
            cells += [f"{v:.2f}", f"{v / fixed[col]:.2f}", f"{v / sliding[col]:.2f}"]
        cmds = ", ".join(f"{k} {v:g}" for k, v in sorted(calls[name].items()) if k != "evalsha")
        print(f"| {name} | {' | '.join(cells)} | {cmds} |")


if __name__ == "__main__":
    main()

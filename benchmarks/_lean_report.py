"""The tables ``bench_lean.py`` prints: issue 12's targets with a pass/fail per row, and
each operation's costs (see ``_common`` for how each figure is taken)."""

from __future__ import annotations

from _common import Mix, Sample, median, ratio, table

from gatekeep import ALGORITHMS

LIMITS_FIXED, LIMITS_SLIDING = "limits fixed window", "limits sliding window counter"
SERVER_TARGETS = [
    ("gatekeep token_bucket", LIMITS_FIXED, 1.5),
    ("gatekeep token_bucket", LIMITS_SLIDING, 0.8),
    *((f"gatekeep {a}", LIMITS_SLIDING, 1.0) for a in ALGORITHMS if a != "sliding_log"),
    ("gatekeep sliding_log", "limits moving window", 1.0),
    ("ASGI gatekeep session, read-only", LIMITS_FIXED, 1.5),
    ("ASGI gatekeep session, read+write", LIMITS_FIXED, 3.0),
]


def floor(front: str, path: str) -> str:
    """The name of a front door's floor case: the bare app plus 1 raw round trip, or 2
    for ``/write`` (a session's load and save)."""
    trips = "2 raw round trips" if path == "/write" else "1 raw round trip"
    return f"{front} floor (bare app + {trips}), {path}"


#: (request, its floor, target x floor; None for a peer shown for comparison)
CLIENT_TARGETS: list[tuple[str, str, float | None]] = [
    ("ASGI gatekeep RateLimitMiddleware", floor("ASGI", "/"), 1.2),
    ("ASGI slowapi SlowAPIASGIMiddleware", floor("ASGI", "/"), None),
    ("ASGI gatekeep session, read-only", floor("ASGI", "/read"), 1.3),
    ("ASGI starsessions session, read-only", floor("ASGI", "/read"), None),
    ("ASGI gatekeep session, read+write", floor("ASGI", "/write"), 1.3),
    ("ASGI starsessions session, read+write", floor("ASGI", "/write"), None),
    ("WSGI gatekeep.wsgi RateLimitMiddleware (Flask)", floor("Flask", "/"), 1.2),
    ("Flask gatekeep.flask RateLimiter", floor("Flask", "/"), 1.2),
    ("Flask gatekeep session, read-only", floor("Flask", "/read"), 1.3),
    ("Flask gatekeep session, read+write", floor("Flask", "/write"), 1.3),
    ("Django gatekeep RateLimitMiddleware", floor("Django", "/"), 1.2),
    ("Django gatekeep session, read-only", floor("Django", "/read"), 1.3),
    ("Django gatekeep session, read+write", floor("Django", "/write"), 1.3),
]


def verdict(ratio: float, limit: float) -> str:
    return "pass" if ratio <= limit else "**FAIL**"


def target_tables(samples: dict[str, list[Sample]]) -> tuple[str, str]:
    """Each ratio the median over rounds of the two operations' ratio in that round."""
    server = []
    for name, peer, limit in SERVER_TARGETS:
        once = ratio(samples, name, peer, "server_us")
        lines = ratio(samples, name, peer, "server_all_lines_us")
        server.append(
            (
                f"{name} / {peer}",
                f"<= {limit:g}x",
                f"{once:.2f}x",
                verdict(once, limit),
                f"{lines:.2f}x",
                verdict(lines, limit),
            )
        )
    client = []
    for name, base, limit in CLIENT_TARGETS:
        cpu = ratio(samples, name, base, "cpu_us")
        wall = ratio(samples, name, base, "wall_us")
        client.append(
            (
                name,
                base,
                "peer" if limit is None else f"<= {limit:g}x",
                f"{cpu:.2f}x",
                "-" if limit is None else verdict(cpu, limit),
                f"{wall:.2f}x",
            )
        )
    return (
        table(
            ["server µs", "target", "counted once", "pass", "all lines (issue 12)", "pass"],
            server,
        ),
        table(["client CPU µs", "floor", "target", "x floor", "pass", "wall x floor"], client),
    )


def cost_table(
    names: list[str],
    samples: dict[str, list[Sample]],
    mixes: dict[str, Mix],
    size: dict[str, str],
    what: str,
) -> str:
    """Per operation, the median over rounds of each figure."""
    rows = []
    for name in names:
        s, mix = median(samples[name]), mixes[name]
        inner = sum(mix.inner.values())
        rows.append(
            (
                name,
                f"{s.wall_us:.1f}",
                f"{s.cpu_us:.1f}",
                f"{s.server_us:.1f}",
                f"{s.server_all_lines_us:.1f}",
                f"{s.server_scripts_us:.1f}",
                f"{mix.round_trips:g}",
                f"{mix.commands - inner:g} + {inner:g}",
                size.get(name, "-"),
            )
        )
    return table(
        [
            "operation",
            "client µs",
            "client CPU µs",
            "server µs",
            "server µs, all lines",
            "server µs, EVALSHA/EVAL",
            "round trips",
            "commands (sent + in scripts)",
            what,
        ],
        rows,
    )

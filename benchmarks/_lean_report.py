"""The tables ``bench_lean.py`` prints: issue 12's targets with a pass/fail per row, and
each operation's costs (see ``_common`` for how each figure is taken)."""

from __future__ import annotations

from _common import Mix, Sample, table

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
CLIENT_TARGETS = [
    ("ASGI gatekeep RateLimitMiddleware", "ASGI floor: bare + 1 raw round trip, /", 1.2),
    ("ASGI gatekeep session, read-only", "ASGI floor: bare + 1 raw round trip(s), /read", 1.3),
    ("ASGI gatekeep session, read+write", "ASGI floor: bare + 2 raw round trip(s), /write", 1.3),
    (
        "WSGI gatekeep.wsgi RateLimitMiddleware (Flask)",
        "Flask floor: bare + 1 raw round trip, /",
        1.2,
    ),
    ("Flask gatekeep.flask RateLimiter", "Flask floor: bare + 1 raw round trip, /", 1.2),
    ("Flask gatekeep session, read-only", "Flask floor: bare + 1 raw round trip(s), /read", 1.3),
    ("Flask gatekeep session, read+write", "Flask floor: bare + 2 raw round trip(s), /write", 1.3),
    ("Django gatekeep RateLimitMiddleware", "Django floor: bare + 1 raw round trip, /", 1.2),
    ("Django gatekeep session, read-only", "Django floor: bare + 1 raw round trip(s), /read", 1.3),
    (
        "Django gatekeep session, read+write",
        "Django floor: bare + 2 raw round trip(s), /write",
        1.3,
    ),
]


def verdict(ratio: float, limit: float) -> str:
    return "pass" if ratio <= limit else "**FAIL**"


def target_tables(med: dict[str, Sample]) -> tuple[str, str]:
    server = []
    for name, peer, limit in SERVER_TARGETS:
        once = med[name].server_us / med[peer].server_us
        lines = med[name].server_all_lines_us / med[peer].server_all_lines_us
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
    for name, floor, limit in CLIENT_TARGETS:
        ratio = med[name].cpu_us / med[floor].cpu_us
        wall = med[name].wall_us / med[floor].wall_us
        client.append(
            (name, floor, f"<= {limit:g}x", f"{ratio:.2f}x", verdict(ratio, limit), f"{wall:.2f}x")
        )
    return (
        table(
            ["server µs", "target", "counted once", "pass", "all lines (issue 12)", "pass"],
            server,
        ),
        table(["client CPU µs", "floor", "target", "x floor", "pass", "wall x floor"], client),
    )


def cost_table(
    names: list[str], med: dict[str, Sample], mixes: dict[str, Mix], size: dict[str, str], what: str
) -> str:
    rows = []
    for name in names:
        s, mix = med[name], mixes[name]
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
                f"{mix.round_trips:g} + {inner:g}",
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

"""``gatekeep demo`` on memory and on Redis, and its display helpers."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
import redis

from gatekeep.cli import main
from gatekeep.cli.demo import Tally, summary_rows
from gatekeep.cli.display import Progress, format_table, percentile
from gatekeep.decision import Decision

FAST = ("--duration", "0.3", "--clients", "3")


def demo(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    rc = main(["demo", *FAST, *argv], out=out)
    return rc, out.getvalue()


def summary(text: str) -> dict[str, list[str]]:
    table = text.split("\n3. Summary")[1].split("\n5. Waiting")[0].splitlines()[3:]
    return {row.split()[0]: row.split()[1:] for row in table if row.strip()}


def metrics_table(text: str) -> dict[str, list[int]]:
    table = text.split("\n6. gatekeep.metrics")[1].split("\nbackend latency")[0]
    rows = table.splitlines()[3:]
    return {
        r.split()[0]: [int(x.replace(",", "")) for x in r.split()[1:]] for r in rows if r.strip()
    }


def check_output(text: str, algorithms: list[str], burst: int = 10, limit: int = 5) -> None:
    for name in algorithms:
        block = text.split(f"  {name}\n", 1)[1]
        allowed, denied = block.splitlines()[:2]
        assert allowed.strip().startswith(f"allowed #1-#{limit};"), allowed
        assert denied.strip().startswith(f"denied  #{limit + 1}-#{burst}:"), denied
        assert "retry after" in denied
    rows = summary(text)
    assert sorted(rows) == sorted(algorithms)
    for name, (requests, allowed, denied, *_rest) in rows.items():
        requests, allowed, denied = (int(x.replace(",", "")) for x in (requests, allowed, denied))
        assert allowed > 0 and denied > 0, name
        assert requests == allowed + denied
        # 3 clients at 5/second (capacity 5) for ~0.3 s: never more than each
        # client's capacity plus what refills, with slack for a slow machine
        assert allowed <= 3 * 2 * (5 + 5 * 2), name
    assert re.search(r"^ +\d+\.\d/0\.3 s +[\d,]+ requests .* denied: done$", text, re.M)
    # gatekeep's own metrics counted the burst (limit allowed, burst - limit denied)
    # and every decision of the traffic phase
    counted = metrics_table(text)
    assert sorted(counted) == sorted([*algorithms, "acquire", "tokens"])
    for name, (_req, allowed, denied, *_rest) in rows.items():
        m_allowed, m_denied, near, waits, settled = counted[name]
        assert waits == settled == 0
        assert m_allowed == int(allowed.replace(",", "")) + limit
        assert m_denied == int(denied.replace(",", "")) + burst - limit
        assert 0 < near <= m_allowed
    assert re.search(r"^backend latency \((memory|redis)\): [\d,]+ calls", text, re.M)
    # part 5: one wait of acquire, then allowed; three settlements, the last a debt
    assert re.search(r"slept, then allowed=True after \d+ ms \(one wait", text)
    assert counted["acquire"][3:] == [1, 0] and counted["tokens"][3:] == [0, 3]
    assert "settle(900): charge, beyond the budget: a debt -> 0 left" in text
    assert "next request of 1: allowed=False" in text


def test_demo_memory():
    rc, text = demo("--backend", "memory")
    assert rc == 0
    assert text.startswith("gatekeep demo on the in-process backend")
    check_output(text, ["token_bucket", "gcra", "sliding_window", "sliding_log", "fixed_window"])


@pytest.mark.redis
def test_demo_throwaway_redis_is_stopped_at_exit():
    rc, text = demo(
        "--backend", "redis", "--algorithm", "gcra", "--requests", "8", "--rate", "3/second"
    )
    assert rc == 0
    pid = int(re.search(r"\(pid (\d+), stopped at exit\)", text)[1])
    assert not os.path.exists(f"/proc/{pid}")  # stopped and reaped
    check_output(text, ["gcra"], burst=8, limit=3)


@pytest.mark.redis
def test_demo_on_a_named_server_leaves_no_keys(server):
    client = redis.Redis.from_url(server.url)
    rc, text = demo("--url", server.url, "--algorithm", "sliding_log")
    assert rc == 0
    assert f"on Redis at {server.url}" in text
    check_output(text, ["sliding_log"])
    assert client.keys("gk:demo-*") == []


def test_demo_bad_options():
    assert demo("--rate", "five per second")[0] == 2
    assert (
        demo("--backend", "memory", "--algorithm", "fixed_window", "--rate", "5/second burst 10")[0]
        == 2
    )
    rc, text = demo("--backend", "memory", "--rate", "5/second burst 10")
    assert rc == 0 and "(skipping fixed_window" in text
    assert sorted(summary(text)) == ["gcra", "token_bucket"]


def test_demo_from_the_command_line():
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeep", "demo", "--backend", "memory", *FAST],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert proc.returncode == 0, proc.stderr
    check_output(
        proc.stdout, ["token_bucket", "gcra", "sliding_window", "sliding_log", "fixed_window"]
    )


def test_progress_tty_rewrites_one_line():
    out = io.StringIO()
    p = Progress(out, tty=True, interval=0)
    p.update("10 requests")
    p.update("9 req")
    p.done("done")
    assert out.getvalue() == "\r10 requests\r9 req      \rdone \n"


def test_progress_plain_prints_lines_at_most_every_interval():
    out = io.StringIO()
    p = Progress(out, interval=3600)  # a StringIO is no TTY
    assert not p.tty
    for i in range(100):
        p.update(f"step {i}")
    p.done("finished")
    assert out.getvalue() == "step 0\nfinished\n"


def test_table_and_percentiles():
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN
    values = sorted(float(i) for i in range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (
        50.0,
        99.0,
        100.0,
    )
    table = format_table(("name", "n"), [("a", 1000), ("bbb", 2.5)])
    assert table.splitlines() == ["name      n", "----  -----", "a     1,000", "bbb     2.5"]


def test_summary_rows():
    t = Tally("gcra", seconds=2.0)
    for i in range(100):
        t.record(Decision(i < 10, 5, 0, 0.0, 0.0), latency=(i + 1) / 1e6)
    [row] = summary_rows([t], clients=2)
    assert row == ("gcra", 100, 10, 90, 90.0, 5.0, 50.0, 99.0, 50.0)

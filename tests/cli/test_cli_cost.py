"""The doctor's server time of a decision and of a session load (``gatekeep.cli.cost``)."""

from __future__ import annotations

import io
import json
import re

import pytest
import redis

from gatekeep.cli import main
from gatekeep.cli.connect import Target
from gatekeep.cli.cost import (
    BATCH,
    BUSY,
    ServerTime,
    check_server_time,
    measure_decision,
    measure_session_load,
    time_calls,
)

NAMES = ("decision cost", "session cost")
SAMPLE = ("--cpu-sample", "0.2")


def report(url: str) -> dict[str, dict]:
    out = io.StringIO()
    main(["doctor", url, "--json", *SAMPLE], out=out)
    return {c["name"]: c for c in json.loads(out.getvalue())["checks"]}


@pytest.mark.redis
def test_figures_are_measured_plausible_and_consistent(server_factory):
    s = server_factory("redis", ("--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"))
    checks = report(s.url)
    for name in NAMES:
        check = checks[name]
        assert check["status"] == "OK", check
        usec, rate = check["value"]["usec"], check["value"]["per_second"]
        # a script call costs a server more than a bare command and far less than a ms
        assert 1.0 < usec < 1000.0, check
        assert rate == pytest.approx(BUSY * 1e6 / usec, rel=0.01)
        assert "no other script running" in check["message"]
    client = redis.Redis.from_url(s.url)
    assert client.keys("gk:doctor:*") == []  # the probes' keys are gone
    stats = client.info("commandstats")
    assert not {"cmdstat_config|set", "cmdstat_config|resetstat"} & set(stats)  # untouched
    assert stats["cmdstat_evalsha"]["calls"] >= 2 * BATCH


@pytest.mark.redis
def test_text_prints_the_figure_and_the_rate_per_shard(server_factory):
    s = server_factory("redis", ("--maxmemory", "64mb", "--maxmemory-policy", "volatile-ttl"))
    out = io.StringIO()
    main(["doctor", s.url, *SAMPLE], out=out)
    text = out.getvalue()
    for name, what, unit in (
        ("decision", "decision", "decisions"),
        ("session", "session load", "session loads"),
    ):
        m = re.search(
            rf"OK +{name} cost +([\d.]+) µs of server time per {what} .*: ([\d,]+) {unit}/s per "
            rf"shard at 90% CPU",
            text,
        )
        assert m, text
        usec, rate = float(m.group(1)), int(m.group(2).replace(",", ""))
        assert usec > 0
        # the printed µs is rounded to 0.1: the rate agrees with it to that precision
        assert BUSY * 1e6 / (usec + 0.05) - 1 <= rate <= BUSY * 1e6 / max(usec - 0.05, 0.01) + 1


@pytest.mark.redis
def test_replica_could_not_measure_and_no_traceback(server_factory):
    primary = server_factory("redis")
    replica = server_factory("redis", ("--replicaof", "127.0.0.1", str(primary.port)))
    checks = report(replica.url)
    decision = checks["decision cost"]
    assert decision["status"] == "WARN"
    assert decision["message"].startswith("could not measure: the server is a read-only replica")
    assert "Traceback" not in json.dumps(checks)


@pytest.mark.redis
def test_acl_without_info_could_not_measure(server_factory):
    s = server_factory("redis")
    redis.Redis.from_url(s.url).acl_setuser(
        "noinfo", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-info"]
    )
    # connect() itself reads INFO: the target is built by hand, as for a server that
    # refused INFO only after the connection was made
    client = redis.Redis.from_url(f"redis://noinfo:pw@127.0.0.1:{s.port}/0")
    target = Target("standalone", client, "noinfo")
    try:
        for measured in (measure_decision(target), measure_session_load(target)):
            check = check_server_time(measured)
            assert check.status == "WARN"
            assert check.message.startswith("could not measure: this user may not run it")
        assert redis.Redis.from_url(s.url).keys("gk:doctor:*") == []
    finally:
        target.close()


class FakeNode:
    """``INFO commandstats`` of a server where ``others`` scripts of ``their_usec`` each
    run beside every batch (``others`` None: a reset in the middle of the batch)."""

    def __init__(self, own_usec: int, others: list[int | None], their_usec: int = 0) -> None:
        self.calls = self.usec = 0
        self.own_usec, self.others, self.their_usec = own_usec, others, their_usec
        self.reads = 0

    def call(self) -> None:
        self.calls += 1
        self.usec += self.own_usec

    def info(self, section: str) -> dict:
        assert section == "commandstats"
        self.reads += 1
        if self.reads % 2 == 0:  # the read after a batch: the others ran meanwhile
            extra = self.others[self.reads // 2 - 1]
            if extra is None:
                self.calls = self.usec = 0
            else:
                self.calls += extra
                self.usec += extra * self.their_usec
        return {"cmdstat_evalsha": {"calls": self.calls, "usec": self.usec}}


def test_batches_alone_are_exact_and_the_least_is_kept():
    node = FakeNode(own_usec=20, others=[3, 0, 5, 0, None], their_usec=100)
    measured = time_calls("decision", node, node.call)
    assert (measured.usec, measured.alone, measured.batches) == (20.0, 2, 5)
    assert node.calls == 0  # the last batch saw a reset: ignored


def test_only_shared_batches_give_the_average_and_say_it_is_inflated():
    node = FakeNode(own_usec=20, others=[BATCH] * 5, their_usec=60)
    measured = time_calls("decision", node, node.call)
    assert measured.usec == 40.0  # half ours at 20 µs, half theirs at 60
    check = check_server_time(measured)
    assert check.status == "OK"
    assert "other clients' scripts" in check.message and "inflates" in check.message


def test_check_lines():
    assert check_server_time(ServerTime("decision", error="x")).message == "could not measure: x"
    assert "reset" in check_server_time(ServerTime("decision", batches=5)).message
    slow = check_server_time(ServerTime("session load", 300.0, 5, 5))
    assert slow.status == "WARN"
    assert slow.value == {"usec": 300.0, "per_second": 3000}
    assert "3,000 session loads/s per shard at 90% CPU" in slow.message

"""``gatekeep demo``'s concurrency part: two slots, a third holder turned away, then let in."""

from __future__ import annotations

import io

from gatekeep.cli import main


def test_demo_shows_a_concurrency_limit():
    out = io.StringIO()
    rc = main(["demo", "--backend", "memory", "--duration", "0.2", "--clients", "2"], out=out)
    text = out.getvalue().split("\n8. Concurrency")[1]
    assert rc == 0
    assert text.count("got a slot (") == 2
    assert "holder 3: refused" in text
    assert "holder 3, again: got a slot" in text
    assert "2 of 2 slots free" in text

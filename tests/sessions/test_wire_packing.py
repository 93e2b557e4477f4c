"""The lean wire packs a batch of script calls (the scripts' SHA and key count from a
cache) into exactly the bytes ``pack`` gives for each EVALSHA / EVALSHA_RO."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gatekeep.backends._wire import _packed, pack
from gatekeep.scripts import Script

SCRIPTS = [Script.from_source(f"s{i}", f"return {i}") for i in range(3)]
arg = st.one_of(st.text(max_size=8), st.binary(max_size=8), st.integers())
call = st.tuples(st.sampled_from(SCRIPTS), st.lists(st.text(max_size=8), max_size=3),
                 st.lists(arg, max_size=5))


@given(st.lists(call, min_size=1, max_size=3), st.booleans())
def test_packed_is_pack_per_call(calls, read_only):
    command = "EVALSHA_RO" if read_only else "EVALSHA"
    want = b"".join(pack((command, s.sha, len(k), *k, *a)) for s, k, a in calls)
    assert _packed(calls, read_only) == want
    assert _packed(calls, read_only) == want  # and again, from the cache

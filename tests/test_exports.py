from __future__ import annotations

import gatekeep


def test_all_is_sorted_and_complete():
    public = {n for n in dir(gatekeep) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(gatekeep.__all__)
    assert gatekeep.__all__ == sorted(gatekeep.__all__)
    for name in gatekeep.__all__:
        assert hasattr(gatekeep, name)

from __future__ import annotations

from gatekeep import Limiter


def test_hit_then_deny(backend, prefix):
    limiter = Limiter("3/minute", backend=backend, prefix=prefix)
    allowed = [limiter.hit("k").allowed for _ in range(4)]
    assert allowed == [True, True, True, False]

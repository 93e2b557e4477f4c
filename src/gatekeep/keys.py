"""Redis key names: a ``gk:`` prefix, the app's prefix, and a hash tag.

Every key that one script touches carries the same ``{...}`` hash tag, so a call
with several limits (or a session and its user index) lands in one Redis Cluster
slot. Braces inside the caller's key are escaped, so a key can neither break out
of its tag nor collide with another key.
"""

from __future__ import annotations

import re

__all__ = ["ROOT", "make_prefix", "tag"]

ROOT = "gk:"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:\-]*$")


def make_prefix(app_prefix: str = "") -> str:
    """``gk:`` plus the app prefix (letters, digits, ``_ . : -``), ending in ``:``."""
    if not isinstance(app_prefix, str) or not _PREFIX_RE.match(app_prefix):
        raise ValueError(
            f"prefix {app_prefix!r} may hold only letters, digits and '_.:-' "
            "(braces would break Redis Cluster hash tags)"
        )
    if not app_prefix:
        return ROOT
    return f"{ROOT}{app_prefix.rstrip(':')}:"


def tag(key: str) -> str:
    """The caller's key as a hash tag: ``{key}``, with ``%``, ``{`` and ``}`` escaped."""
    if "{" in key or "}" in key or "%" in key:
        key = key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return "{" + key + "}"

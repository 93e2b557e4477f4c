"""Key functions: who a request counts against.

A key function takes a :class:`~gatekeep.ratelimit.request.RequestView` and
returns a string (the identity whose budget the request spends) or None (this
rule does not apply to this request, e.g. a per-user limit and an anonymous
visitor). It may be a plain function or an ``async def``.

The built-in ones prefix their value with its kind (``ip:``, ``user:`` ...), so
two kinds of identity never share a counter, and never raise on malformed input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from functools import lru_cache
from typing import Any

from .ip import IPNetwork, TrustedProxies
from .request import RequestView

__all__ = ["KeyFunc", "client_ip", "header", "session", "user"]

KeyFunc = Callable[[RequestView], "str | Awaitable[str | None] | None"]

# Identities end up in Redis keys: bound them, and hash long ones.
_MAX_KEY = 200


def clean(kind: str, value: str) -> str:
    """``kind:value``; values that are long or not printable ASCII are hashed."""
    if len(value) > _MAX_KEY or not value.isascii() or not value.isprintable():
        value = "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}:{value}"


@lru_cache(maxsize=8192)
def _peer_key(proxies: TrustedProxies, peer: str | None) -> str:
    return "ip:" + proxies.client(peer)


class client_ip:  # used like a function: key=client_ip()
    """The client's address (IPv6 grouped by /64), honouring trusted proxies only.

    >>> key = client_ip(trusted=["10.0.0.0/8"])    # behind a load balancer in 10/8
    >>> key = client_ip(trusted=["unix"])          # nginx -> uvicorn --uds
    """

    __slots__ = ("proxies",)

    def __init__(
        self,
        trusted: Iterable[str | IPNetwork] | TrustedProxies = (),
        *,
        header: str = "x-forwarded-for",
        ipv6_prefix: int = 64,
    ) -> None:
        self.proxies = (
            trusted
            if isinstance(trusted, TrustedProxies)
            else TrustedProxies(trusted, header=header, ipv6_prefix=ipv6_prefix)
        )

    def __call__(self, request: RequestView) -> str:
        proxies = self.proxies
        if proxies.networks or proxies.unix:
            values = request.headers(proxies.header)
            if values:
                return "ip:" + proxies.client(request.peer, values)
        return _peer_key(proxies, request.peer)

    def __repr__(self) -> str:
        return f"client_ip({self.proxies!r})"


class header:
    """The value of a request header, e.g. an API key; None (rule skipped) when absent.

    The value is stored as a SHA-256 digest, so API keys never sit in clear in
    Redis; ``hash=False`` keeps short printable values as they are.
    """

    __slots__ = ("hash", "name")

    def __init__(self, name: str, *, hash: bool = True) -> None:
        if not isinstance(name, str) or not name or not name.isascii() or " " in name:
            raise ValueError(f"header name must be a non-empty ASCII token, got {name!r}")
        self.name = name.lower()
        self.hash = hash

    def __call__(self, request: RequestView) -> str | None:
        value = request.header(self.name)
        if not value:
            return None
        if self.hash:
            digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
            return f"h:{self.name}:{digest}"
        return clean(f"h:{self.name}", value)

    def __repr__(self) -> str:
        return f"header({self.name!r})"


def _user_id(user: Any) -> str | None:
    if user is None:
        return None
    authenticated = getattr(user, "is_authenticated", True)
    if callable(authenticated):  # very old Django, some custom user classes
        authenticated = authenticated()
    if not authenticated:
        return None
    for attr in ("identity", "pk", "id", "username", "display_name"):
        value = getattr(user, attr, None)
        if value is not None and value != "":
            return str(value)
    if isinstance(user, str) and user:
        return user
    return None


class user:
    """The authenticated user (``scope["user"]``, ``request.user``); None when anonymous.

    ``fallback``: another key function for anonymous requests, e.g. ``client_ip()``.
    """

    __slots__ = ("fallback",)

    def __init__(self, fallback: KeyFunc | None = None) -> None:
        self.fallback = fallback

    def __call__(self, request: RequestView) -> str | Awaitable[str | None] | None:
        uid = _user_id(request.user)
        if uid is not None:
            return clean("user", uid)
        return None if self.fallback is None else self.fallback(request)

    def __repr__(self) -> str:
        return f"user(fallback={self.fallback!r})"


_SESSION_ID_ATTRS = ("session_id", "id", "session_key", "sid")


class session:
    """The session id (``scope["session"]``); None when there is no session yet.

    Works with gatekeep sessions and Django's (``session_key``); a plain dict
    session (Starlette's cookie sessions) has no id, and ``id_field`` names a
    value inside it instead.
    """

    __slots__ = ("fallback", "id_field")

    def __init__(self, *, id_field: str | None = None, fallback: KeyFunc | None = None) -> None:
        self.id_field = id_field
        self.fallback = fallback

    def __call__(self, request: RequestView) -> str | Awaitable[str | None] | None:
        sess = request.session
        sid: Any = None
        if sess is not None:
            if self.id_field is not None:
                try:
                    sid = sess.get(self.id_field)
                except Exception:
                    sid = None
            else:
                for attr in _SESSION_ID_ATTRS:
                    sid = getattr(sess, attr, None)
                    if sid:
                        break
        if sid:
            return clean("session", str(sid))
        return None if self.fallback is None else self.fallback(request)

    def __repr__(self) -> str:
        return f"session(id_field={self.id_field!r})"

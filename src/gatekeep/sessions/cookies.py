"""Session cookies: the signed id in, ``Set-Cookie`` out. Pure functions, no I/O.

The cookie holds only the session id, signed with itsdangerous (HMAC-SHA256 and
a timestamp). Anything else is refused before the store is asked: too long, not
the id's alphabet, a bad or expired signature, or several differing valid
cookies of the same name (a subdomain may have tossed one in: use the
``__Host-`` prefix to rule that out).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadData, SignatureExpired, TimestampSigner
from itsdangerous.signer import HMACAlgorithm

from .store import is_session_id

__all__ = ["CookiePolicy", "CookieSigner", "cookie_values"]

#: Longer cookie values are refused unread (ours are about 100 characters).
MAX_COOKIE = 256
#: How many verified cookies are remembered (their HMAC is not checked again).
VERIFIED_CACHE = 4096
#: At most this many cookies of our name are looked at.
MAX_CANDIDATES = 8
_VALUE_RE = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_ATTR_RE = re.compile(r"[\x21-\x3a\x3c-\x7e]*\Z")  # printable ASCII, no ';'


class _PreparedHMAC(HMACAlgorithm):
    """itsdangerous's HMAC, each key's HMAC state prepared once (the key hashed into
    it): a signature copies it and adds the value, the same bytes as ``hmac.new``."""

    def __init__(self, digest_method: Any) -> None:
        super().__init__(digest_method)
        self._prepared: dict[bytes, Any] = {}

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        base = self._prepared.get(key)
        if base is None:
            if len(self._prepared) >= 16:  # derived keys of one signer: a handful
                self._prepared.clear()
            base = self._prepared[key] = hmac.new(key, digestmod=self.digest_method)
        mac = base.copy()
        mac.update(value)
        return mac.digest()


class _Signer(TimestampSigner):
    """itsdangerous's ``TimestampSigner``, each secret key's derived key computed once
    (itsdangerous derives it again for every signature)."""

    def __init__(self, secret_key: bytes | list[bytes], salt: str) -> None:
        super().__init__(
            secret_key,
            salt=salt,
            digest_method=hashlib.sha256,
            algorithm=_PreparedHMAC(hashlib.sha256),
        )
        self._derived: dict[str | bytes | None, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        # secret_key: None (the signing key) or one of self.secret_keys: a handful
        key = self._derived.get(secret_key)
        if key is None:
            key = self._derived[secret_key] = super().derive_key(secret_key)
        return key


class CookieSigner:
    """Signs session ids; verifies them with any of the keys.

    ``secret_key`` is one key or a list: the first signs, every one verifies, so a
    new key goes first and an old one stays at the end until its cookies expire.
    """

    def __init__(
        self, secret_key: str | bytes | Sequence[str | bytes], *, salt: str = "gatekeep.session"
    ) -> None:
        keys = [secret_key] if isinstance(secret_key, (str, bytes)) else list(secret_key)
        if not keys or not all(isinstance(k, (str, bytes)) and k for k in keys):
            raise ValueError(
                "secret_key must be a non-empty string, or a non-empty list of "
                "them (the first signs, all verify); generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        raw = [k.encode() if isinstance(k, str) else k for k in keys]
        self._signer: TimestampSigner = _Signer(raw[0], salt)
        # The old keys verify only what the first does not: a cookie they verify is
        # marked, so the middleware signs it again with the first key.
        self._old: TimestampSigner | None = None
        if len(raw) > 1:  # itsdangerous tries the last key of its list first
            self._old = _Signer(raw[:0:-1], salt)
        #: Cookies already verified: value -> (id, signed_at, old key). Only valid ones
        #: enter, so it cannot be filled with junk; the age is checked again on every hit.
        self._verified: dict[str, tuple[str, float, bool]] = {}

    def sign(self, session_id: str) -> str:
        return self._signer.sign(session_id).decode("ascii")

    def unsign(self, value: str, max_age: float | None) -> tuple[str, float, bool] | None:
        """``(session_id, signed_at, signed with an old key)`` from a cookie value, or
        None for anything invalid."""
        hit = self._verified.get(value)
        if hit is not None:
            if max_age is not None and time.time() - hit[1] > max_age:
                return None
            return hit
        if len(value) > MAX_COOKIE or not _VALUE_RE.match(value):
            return None
        age = None if max_age is None else math.floor(max_age)
        old = False
        try:
            sid, when = self._signer.unsign(value, max_age=age, return_timestamp=True)
        except SignatureExpired:
            return None
        except (BadData, ValueError, OverflowError):
            if self._old is None:
                return None
            try:
                sid, when = self._old.unsign(value, max_age=age, return_timestamp=True)
            except (BadData, ValueError, OverflowError):
                return None
            old = True
        text = sid.decode("ascii")
        if not is_session_id(text):
            return None
        if len(self._verified) >= VERIFIED_CACHE:
            self._verified.clear()
        got = self._verified[value] = (text, when.timestamp(), old)
        return got

    def pick(self, values: Sequence[str], max_age: float | None) -> tuple[str, float, bool] | None:
        """The one valid session among a request's cookies of our name, if exactly one."""
        if not values or len(values) > MAX_CANDIDATES:
            return None
        if len(values) == 1:  # the usual case
            return self.unsign(values[0], max_age)
        found: dict[str, tuple[str, float, bool]] = {}
        for value in values:
            got = self.unsign(value, max_age)
            if got is not None:
                found[got[0]] = got
        if len(found) != 1:
            return None
        return next(iter(found.values()))


def cookie_values(headers: Iterable[str], name: str) -> list[str]:
    """Every value of the cookie ``name`` in the ``Cookie`` headers, in order."""
    out = []
    for header in headers:
        if name not in header:
            continue
        for part in header.split(";"):
            key, sep, value = part.partition("=")
            if sep and key.strip() == name:
                out.append(value.strip())
    return out


_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """How the session cookie is set: Starlette's parameter names, safer defaults.

    ``https_only`` (``Secure``) is on by default: browsers then send the cookie over
    HTTPS only, so for local development over plain http pass ``https_only=False``.
    ``host_prefix=True`` names the cookie ``__Host-<name>``, which browsers accept
    only with ``Secure``, ``Path=/`` and no ``Domain``: no subdomain can set it.
    """

    name: str = "session"
    path: str = "/"
    domain: str | None = None
    same_site: str = "lax"
    https_only: bool = True
    host_prefix: bool = False
    #: The ``Partitioned`` attribute (CHIPS): a cookie kept per top-level site.
    partitioned: bool = False
    #: ``"title"`` (``Path=/; HttpOnly``, as Werkzeug) or ``"starlette"`` (``path=/;
    #: httponly``, as Starlette): attribute names are case-insensitive (RFC 6265).
    spelling: str = "title"
    #: What every Set-Cookie of this policy shares, built once: before the value
    #: (``name=``), after it (``; Path=/``), and its attributes (``; HttpOnly; ...``).
    _head: str = field(default="", init=False, repr=False, compare=False)
    _path_part: str = field(default="", init=False, repr=False, compare=False)
    _tail: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOKEN_RE.match(self.name):
            raise ValueError(f"session_cookie {self.name!r} is not a valid cookie name")
        if self.same_site.lower() not in _SAME_SITE:
            raise ValueError(f"same_site must be 'lax', 'strict' or 'none', not {self.same_site!r}")
        if self.same_site.lower() == "none" and not self.https_only:
            raise ValueError(
                "same_site='none' needs https_only=True (browsers require "
                "Secure for SameSite=None cookies)"
            )
        for attr in ("path", "domain"):
            value = getattr(self, attr)
            if value is not None and (not isinstance(value, str) or not _ATTR_RE.match(value)):
                raise ValueError(f"{attr} {value!r} must be printable ASCII without ';'")
        if self.partitioned and not self.https_only:
            raise ValueError(
                "partitioned=True needs https_only=True (browsers accept a "
                "Partitioned cookie only with Secure)"
            )
        if self.spelling not in ("title", "starlette"):
            raise ValueError(f"spelling must be 'title' or 'starlette', not {self.spelling!r}")
        if self.host_prefix and (not self.https_only or self.path != "/" or self.domain):
            raise ValueError(
                "host_prefix=True (a __Host- cookie) needs https_only=True, path='/' and no domain"
            )
        object.__setattr__(self, "_head", self.cookie_name + "=")
        object.__setattr__(self, "_path_part", "; " + self._path())
        object.__setattr__(self, "_tail", "; " + self._attributes())

    @property
    def cookie_name(self) -> str:
        return "__Host-" + self.name if self.host_prefix else self.name

    def _attributes(self) -> str:
        same_site = _SAME_SITE[self.same_site.lower()]
        if self.spelling == "starlette":  # Starlette's order and spelling
            parts = ["httponly", f"samesite={same_site.lower()}"]
            if self.https_only:
                parts.append("secure")
            if self.domain:
                parts.append(f"domain={self.domain}")
            if self.partitioned:
                parts.append("partitioned")
            return "; ".join(parts)
        parts = []
        if self.domain:
            parts.append(f"Domain={self.domain}")
        parts += ["HttpOnly", f"SameSite={same_site}"]
        if self.https_only:
            parts.append("Secure")
        if self.partitioned:
            parts.append("Partitioned")
        return "; ".join(parts)

    def _path(self) -> str:
        return f"{'path' if self.spelling == 'starlette' else 'Path'}={self.path}"

    def set(self, value: str, max_age: int | None) -> str:
        """A ``Set-Cookie`` value; ``max_age`` None makes a browser-session cookie (0 or
        less: one the browser drops at once, written as given, as Starlette does)."""
        if max_age is None:
            return self._head + value + self._path_part + self._tail
        return f"{self._head}{value}{self._path_part}; Max-Age={max_age}{self._tail}"

    def delete(self) -> str:
        expires = "expires" if self.spelling == "starlette" else "Expires"
        return (
            f"{self.cookie_name}=; {self._path()}; Max-Age=0; "
            f"{expires}=Thu, 01 Jan 1970 00:00:00 GMT; {self._attributes()}"
        )

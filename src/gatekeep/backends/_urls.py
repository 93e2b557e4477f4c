"""Parsing gatekeep's Redis URLs: which kind of deployment, which hosts, which options.

``redis://``, ``rediss://``, ``unix://``, ``valkey://`` and ``valkeys://`` name one
server and are left to redis-py's own parser (:func:`redis_url` only renames Valkey's
schemes); ``redis+sentinel://`` and ``redis+cluster://`` (and their TLS and Valkey
forms) are parsed here into an :class:`Endpoint` by :func:`parse_url` (the forms are
described in :mod:`gatekeep.backends.connect`, which builds the clients).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["STANDALONE", "Endpoint", "parse_url", "redis_url", "safe_url"]

#: The schemes of one server, parsed by redis-py.
STANDALONE = ("redis://", "rediss://", "unix://", "valkey://", "valkeys://")
_SCHEMES = {
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "valkey+sentinel": ("sentinel", False),
    "valkeys+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "valkey+cluster": ("cluster", False),
    "valkeys+cluster": ("cluster", True),
}
_FLOAT_QUERY = ("timeout", "socket_timeout", "socket_connect_timeout")
#: As redis-py's own URL parser reads it for rediss:// (a node's announced address may
#: not be a name in its certificate: a cluster's nodes are reached by the IPs they announce).
_BOOL_QUERY = ("ssl_check_hostname",)
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_STR_QUERY = (
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "client_name",
    "sentinel_username",
    "sentinel_password",
)


@dataclass(frozen=True)
class Endpoint:
    """A parsed ``redis+sentinel://`` or ``redis+cluster://`` URL."""

    kind: str  # "sentinel" | "cluster"
    hosts: tuple[tuple[str, int], ...]
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def parse_url(url: str) -> Endpoint:
    """Parse a Sentinel or Cluster URL; raise ``ValueError`` saying what is wrong."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ValueError(
            f"Redis URL {safe_url(url)!r} must start with redis://, rediss://, "
            "unix://, redis+sentinel:// or redis+cluster:// (valkey:// too)"
        )
    kind, ssl = _SCHEMES[scheme.lower()]
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    hosts = tuple(
        _host_port(h, url, 26379 if kind == "sentinel" else 6379) for h in hostlist.split(",")
    )
    path = [unquote(p) for p in parts.path.split("/") if p]
    service, db = None, 0
    if kind == "sentinel":
        if not path or len(path) > 2:
            raise ValueError(
                f"{safe_url(url)!r}: a Sentinel URL ends in /service_name or "
                "/service_name/db, e.g. redis+sentinel://s1:26379,s2:26379/mymaster/0"
            )
        service = path[0]
        if len(path) == 2:
            db = _int(path[1], "db", url)
    elif path:
        raise ValueError(
            f"{safe_url(url)!r}: a Cluster URL has no path (Redis Cluster has only db 0)"
        )
    options: dict[str, Any] = {}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        value = values[-1]
        if key in _FLOAT_QUERY:
            options[key] = _float(value, key, url)
        elif key in _BOOL_QUERY:
            if value.lower() not in _BOOLS:
                raise ValueError(f"{safe_url(url)!r}: {key} must be true or false, got {value!r}")
            options[key] = _BOOLS[value.lower()]
        elif key in _STR_QUERY and (kind == "sentinel" or not key.startswith("sentinel_")):
            options[key] = value
        elif key == "db" and kind == "sentinel":
            db = _int(value, "db", url)
        else:
            raise ValueError(
                f"{safe_url(url)!r}: unknown option {key!r}; URL options are "
                f"{', '.join(_FLOAT_QUERY + _BOOL_QUERY + _STR_QUERY)} (pass others as "
                "keyword arguments)"
            )
    return Endpoint(kind, hosts, service, db, username, password, ssl, options)


def redis_url(url: str) -> str:
    # valkey:// is what Valkey's docs use; redis-py knows it as redis://.
    if url.startswith("valkey://"):
        return "redis://" + url[len("valkey://") :]
    if url.startswith("valkeys://"):
        return "rediss://" + url[len("valkeys://") :]
    return url


def _host_port(text: str, url: str, default_port: int) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [::1]:26379
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"{safe_url(url)!r}: empty host in the host list")
    port = _int(port_text, "port", url) if port_text else default_port
    if not 0 < port < 65536:
        raise ValueError(f"{safe_url(url)!r}: port {port} out of range")
    return host, port


def _int(text: str, what: str, url: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{safe_url(url)!r}: {what} must be an integer, got {text!r}") from None


def _float(text: str, what: str, url: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{safe_url(url)!r}: {what} must be a number of seconds > 0, got {text!r}")
    return value


def safe_url(url: str) -> str:
    """The URL with its password masked, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{userinfo}{at}{tail}"

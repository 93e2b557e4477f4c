"""The client's address, behind trusted proxies or not.

``X-Forwarded-For`` and ``Forwarded`` are written by whoever sends the request,
so they are read only when the peer (the TCP address the server saw) is a proxy
you trust, and then walked from the right: each trusted hop is skipped, and the
first address that is not a trusted proxy is the client. Everything to its left
was written by that client and is ignored, so a client cannot pick its identity.

Behind a reverse proxy on the same host, the app server often listens on a unix
socket (``uvicorn --uds``): then there is no peer address, and the peer is
:data:`UNIX_PEER`. Trust it with ``"unix"`` among the trusted proxies: only a
process that can open the socket file can connect, i.e. your proxy.

IPv6 clients usually hold a whole /64, so by default their key is the /64
network, not the single address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

__all__ = ["UNIX_PEER", "TrustedProxies", "parse_forwarded_for", "parse_x_forwarded_for"]

#: The peer of a request that came through a unix socket (it has no address).
UNIX_PEER = "unix"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_HEADERS = ("x-forwarded-for", "forwarded")
# Proxies append to these headers; a longer chain than this is not a real one.
_MAX_HOPS = 64


@lru_cache(maxsize=8192)
def parse_ip(text: str) -> IPAddress | None:
    """An address from a header or a peer: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``.

    Returns None for anything else ("unknown", obfuscated ``_hidden`` names, junk).
    """
    text = text.strip().strip('"')
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    if "%" in text:  # a zone index names an interface, not a host
        text = text.split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_x_forwarded_for(values: Iterable[str]) -> list[str]:
    """The hops of every ``X-Forwarded-For`` field, left to right, as written."""
    hops: list[str] = []
    for value in values:
        hops.extend(part.strip() for part in value.split(","))
    return hops


def parse_forwarded_for(values: Iterable[str]) -> list[str]:
    """The ``for=`` node of each element of every ``Forwarded`` field (RFC 7239), in order.

    An element without ``for=`` yields ``""``, which never parses as an address.
    """
    hops: list[str] = []
    for value in values:
        for element in _split_quoted(value, ","):
            node = ""
            for pair in _split_quoted(element, ";"):
                name, sep, val = pair.partition("=")
                if sep and name.strip().lower() == "for":
                    node = val.strip()
            hops.append(node)
    return hops


def _split_quoted(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes (``for="[::1]:80"`` holds no separator)."""
    parts, start, quoted, i = [], 0, False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


class TrustedProxies:
    """Which peers may tell us who the client is, and how clients are grouped.

    >>> proxies = TrustedProxies(["10.0.0.0/8"])
    >>> proxies.client("10.1.2.3", ["203.0.113.9, 10.0.0.5"])
    '203.0.113.9'
    >>> proxies.client("198.51.100.7", ["203.0.113.9"])   # not a proxy: header ignored
    '198.51.100.7'

    ``networks``: CIDR strings or networks of the proxies in front of the app
    (nothing is trusted by default), and ``"unix"`` to trust a unix-socket peer.
    ``header``: ``"x-forwarded-for"`` (default) or ``"forwarded"``; only the one
    your proxy writes should be read, since a proxy passes the other through
    untouched. ``ipv6_prefix``: IPv6 clients are grouped by this prefix length (64
    by default; 128 keeps single addresses).
    """

    __slots__ = ("header", "ipv4_prefix", "ipv6_prefix", "networks", "unix")

    def __init__(
        self,
        networks: Iterable[str | IPNetwork] = (),
        *,
        header: str = "x-forwarded-for",
        ipv6_prefix: int = 64,
        ipv4_prefix: int = 32,
    ) -> None:
        if isinstance(networks, str):
            networks = [networks]
        nets: list[IPNetwork] = []
        unix = False
        for net in networks:
            if net == UNIX_PEER:
                unix = True
                continue
            try:
                nets.append(ipaddress.ip_network(net, strict=False))
            except (ValueError, TypeError):
                raise ValueError(
                    f"trusted proxy {net!r} is not an address or a network; "
                    "give CIDR strings such as '10.0.0.0/8' or '127.0.0.1', or 'unix' "
                    "for a unix-socket peer"
                ) from None
        if header.lower() not in _HEADERS:
            raise ValueError(f"header must be one of {_HEADERS}, got {header!r}")
        if not isinstance(ipv6_prefix, int) or not 1 <= ipv6_prefix <= 128:
            raise ValueError(f"ipv6_prefix must be 1..128, got {ipv6_prefix!r}")
        if not isinstance(ipv4_prefix, int) or not 1 <= ipv4_prefix <= 32:
            raise ValueError(f"ipv4_prefix must be 1..32, got {ipv4_prefix!r}")
        self.networks: tuple[IPNetwork, ...] = tuple(nets)
        #: Whether a unix-socket peer (:data:`UNIX_PEER`) is a trusted proxy.
        self.unix = unix
        self.header = header.lower()
        self.ipv6_prefix = ipv6_prefix
        self.ipv4_prefix = ipv4_prefix

    def trusts(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks)

    def client(self, peer: str | None, header_values: Sequence[str] = ()) -> str:
        """The client's group (an address or a network, as text) for rate limiting.

        ``peer`` is the address the server saw; ``header_values`` every value of
        the configured forwarding header. Never raises on malformed input.
        """
        address = parse_ip(peer) if peer else None
        if address is None:
            if peer == UNIX_PEER and self.unix and header_values:
                found = self._walk(header_values, None)
                if found is not None:
                    return self._group(found)
            # No peer (a unix socket, a test client): the peer string itself, if any.
            return _group_text(peer or "unknown")
        if header_values and self.networks and self.trusts(_unmap(address)):
            address = self._walk(header_values, address) or address
        return self._group(address)

    def _walk(self, header_values: Sequence[str], address: IPAddress | None) -> IPAddress | None:
        """The client, from the right of the forwarding header: each trusted hop is
        skipped; ``address`` (the trusted peer) when no hop can be read."""
        hops = (
            parse_x_forwarded_for(header_values)
            if self.header == "x-forwarded-for"
            else parse_forwarded_for(header_values)
        )
        for hop in reversed(hops[-_MAX_HOPS:]):
            hop_address = parse_ip(hop)
            if hop_address is None:
                # A trusted proxy wrote junk: what lies left of it is unknowable,
                # so the last trusted hop stands for the client.
                break
            address = hop_address
            if not self.trusts(_unmap(address)):
                break
        return address

    def _group(self, address: IPAddress) -> str:
        return _grouped(_unmap(address), self.ipv4_prefix, self.ipv6_prefix)

    def __repr__(self) -> str:
        nets = [str(n) for n in self.networks] + ([UNIX_PEER] if self.unix else [])
        return f"TrustedProxies({nets!r}, header={self.header!r}, ipv6_prefix={self.ipv6_prefix})"


def _unmap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=4096)
def _grouped(address: IPAddress, v4: int, v6: int) -> str:
    if isinstance(address, ipaddress.IPv4Address):
        if v4 == 32:
            return str(address)
        return str(ipaddress.IPv4Network((address, v4), strict=False))
    if v6 == 128:
        return str(address)
    return str(ipaddress.IPv6Network((address, v6), strict=False))


def _group_text(text: str) -> str:
    # Only printable ASCII, bounded: the value ends up in a Redis key.
    return "".join(ch for ch in text[:64] if 32 < ord(ch) < 127) or "unknown"

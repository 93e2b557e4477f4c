"""Client addresses behind trusted proxies: no client can choose its identity."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeep.ratelimit import TrustedProxies, WSGIRequest, client_ip
from gatekeep.ratelimit.ip import parse_forwarded_for, parse_ip


def test_peer_not_trusted_ignores_headers() -> None:
    p = TrustedProxies(["10.0.0.0/8"])
    assert p.client("198.51.100.7", ["203.0.113.9"]) == "198.51.100.7"


def test_walks_from_the_right_skipping_trusted_hops() -> None:
    p = TrustedProxies(["10.0.0.0/8"])
    # the client wrote "1.1.1.1" itself; 203.0.113.9 is what our proxy saw
    assert p.client("10.0.0.1", ["1.1.1.1, 203.0.113.9, 10.0.0.7"]) == "203.0.113.9"
    # several fields are one list, in order
    assert p.client("10.0.0.1", ["1.1.1.1", "203.0.113.9"]) == "203.0.113.9"


def test_all_hops_trusted_gives_leftmost() -> None:
    p = TrustedProxies(["10.0.0.0/8"])
    assert p.client("10.0.0.1", ["10.0.0.9, 10.0.0.8"]) == "10.0.0.9"


def test_junk_hop_stops_at_last_trusted() -> None:
    p = TrustedProxies(["10.0.0.0/8"])
    assert p.client("10.0.0.1", ["1.1.1.1, unknown, 10.0.0.3"]) == "10.0.0.3"
    assert p.client("10.0.0.1", ["garbage"]) == "10.0.0.1"


def test_forwarded_header() -> None:
    p = TrustedProxies(["127.0.0.1"], header="forwarded")
    value = 'for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https, for=127.0.0.1'
    assert parse_forwarded_for([value]) == ["1.1.1.1", '"[2001:db8:cafe::17]:4711"', "127.0.0.1"]
    assert p.client("127.0.0.1", [value]) == "2001:db8:cafe::/64"
    # X-Forwarded-For is not read when Forwarded is configured
    req = WSGIRequest({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "9.9.9.9"})
    assert client_ip(p)(req) == "ip:127.0.0.1"


def test_ipv6_grouped_by_64_and_mapped_ipv4() -> None:
    p = TrustedProxies()
    assert p.client("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert p.client("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert TrustedProxies(ipv6_prefix=128).client("2001:db8::1") == "2001:db8::1"
    assert p.client("::ffff:192.0.2.1") == "192.0.2.1"


def test_parse_ip_forms() -> None:
    assert str(parse_ip("1.2.3.4:80")) == "1.2.3.4"
    assert str(parse_ip("[::1]:80")) == "::1"
    assert str(parse_ip("fe80::1%eth0")) == "fe80::1"
    assert parse_ip("_hidden") is None
    assert parse_ip("[::1") is None


@pytest.mark.parametrize("bad", [["nope/99"], ["10.0.0.0/40"], [object()]])
def test_bad_networks_raise_at_configuration(bad: list[object]) -> None:
    with pytest.raises(ValueError, match="trusted proxy"):
        TrustedProxies(bad)  # type: ignore[arg-type]


def test_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="header"):
        TrustedProxies(header="x-real-ip")
    with pytest.raises(ValueError, match="ipv6_prefix"):
        TrustedProxies(ipv6_prefix=0)


def test_unparseable_peer_is_kept_printable() -> None:
    assert TrustedProxies().client("testclient") == "testclient"
    assert TrustedProxies().client(None) == "unknown"
    assert TrustedProxies().client("\x00\x01") == "unknown"


_header_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=80)
_hop = st.one_of(
    st.ip_addresses().map(str), _header_text, st.ip_addresses(v=6).map(lambda a: f'"[{a}]:80"')
)


@settings(max_examples=300, deadline=None)
@given(
    peer=st.ip_addresses().map(str),
    xff=st.lists(st.lists(_hop, max_size=5).map(", ".join), max_size=3),
    fwd=st.lists(
        st.lists(_hop, max_size=4).map(lambda h: ", ".join(f"for={x}" for x in h)), max_size=3
    ),
)
def test_untrusted_client_cannot_change_identity(peer: str, xff: list[str], fwd: list[str]) -> None:
    """Whatever an untrusted peer writes in either header, its key is its own address."""
    address = ipaddress.ip_address(peer)
    if address in ipaddress.ip_network("10.0.0.0/8"):
        return
    for header in ("x-forwarded-for", "forwarded"):
        proxies = TrustedProxies(["10.0.0.0/8"], header=header)
        values = xff if header == "x-forwarded-for" else fwd
        assert proxies.client(peer, values) == proxies.client(peer, [])


@settings(max_examples=300, deadline=None)
@given(client=st.ip_addresses(v=4).map(str), spoof=st.lists(_hop, max_size=4))
def test_behind_trusted_proxy_the_client_cannot_spoof(client: str, spoof: list[str]) -> None:
    """Through a trusted proxy that appends the real peer, left-hand junk is ignored."""
    if ipaddress.ip_address(client) in ipaddress.ip_network("10.0.0.0/8"):
        return
    proxies = TrustedProxies(["10.0.0.0/8"])
    written = ", ".join(spoof)  # whatever the client sends
    value = f"{written}, {client}" if written else client
    assert proxies.client("10.1.1.1", [value]) == client


@settings(max_examples=200, deadline=None)
@given(
    peer=st.one_of(st.none(), _header_text),
    values=st.lists(_header_text, max_size=3),
    header=st.sampled_from(["x-forwarded-for", "forwarded"]),
)
def test_malformed_input_never_raises(peer: str | None, values: list[str], header: str) -> None:
    result = TrustedProxies(["0.0.0.0/0", "::/0"], header=header).client(peer, values)
    assert result and result.isascii() and result.isprintable()

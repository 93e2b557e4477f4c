"""Patterns, rules and the policy's order of precedence (no I/O)."""

from __future__ import annotations

import pytest

from gatekeep.ratelimit import RateLimitPolicy, Rule
from gatekeep.ratelimit.rules import compile_pattern


@pytest.mark.parametrize(
    ("pattern", "method", "path", "expected"),
    [
        ("/login", "POST", "/login", True),
        ("/login", "GET", "/login/", False),
        ("POST /login", "GET", "/login", False),
        ("GET /files/*", "HEAD", "/files/a.txt", True),  # HEAD goes with GET
        ("GET /files/*", "GET", "/files/a/b", False),
        ("/users/{id}/posts", "GET", "/users/42/posts", True),
        ("/users/{id}/posts", "GET", "/users//posts", False),
        ("/api/**", "GET", "/api", True),
        ("/api/**", "GET", "/api/v1/x", True),
        ("/api/**", "GET", "/apix", False),
        ("/a.b", "GET", "/aXb", False),  # regex characters are literal
        ("/**", "DELETE", "/anything/at/all", True),
        ("GET,POST /x", "POST", "/x", True),
    ],
)
def test_patterns(pattern: str, method: str, path: str, expected: bool) -> None:
    assert compile_pattern(pattern).matches(method, path) is expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("5/minute", "login"), "must be a path"),
        (("5/minute", "FETCH /x"), "unknown HTTP method"),
        (("5/minute", "/x/{id"), "unclosed"),
        (("lots", "/x"), "Malformed rate"),
        (("5/minute", []), "at least one path"),
    ],
)
def test_bad_rules_raise_at_configuration(args: tuple[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rule(*args)


def test_bad_names_and_duplicates() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        Rule("5/minute", "/x", name='bad"name')
    with pytest.raises(ValueError, match="unique"):
        RateLimitPolicy([Rule("5/minute", "/x", name="a"), Rule("6/minute", "/y", name="a")])
    with pytest.raises(ValueError, match="on_error"):
        RateLimitPolicy(on_error="explode")
    with pytest.raises(TypeError, match="key"):
        RateLimitPolicy(key="ip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="burst"):
        RateLimitPolicy([Rule("5/minute burst 9", "/x")], algorithm="fixed_window")


def test_precedence_exempt_rules_default() -> None:
    login = Rule("5/minute", "POST /login", name="login")
    api = Rule("100/minute", ["/api/**", "/graphql"], name="api")
    everything = Rule("1000/minute", "/**", name="global")
    policy = RateLimitPolicy([login, api], default="60/minute", exempt=["/health", "/static/**"])
    assert policy.match("GET", "/health") is None
    assert policy.match("GET", "/static/app.js") is None
    assert policy.match("POST", "/login") == (login,)
    assert policy.match("GET", "/login") == (policy.default_rule,)  # no rule: the default
    assert policy.match("GET", "/graphql") == (api,)
    assert policy.match("GET", "/api/v1/users") == (api,)
    both = RateLimitPolicy([login, everything], default="60/minute")
    assert both.match("POST", "/login") == (login, everything)  # every matching rule applies
    assert RateLimitPolicy([login]).match("GET", "/") is None  # no default: unlimited


def test_batch_merges_rules_with_different_keys_into_one_plan() -> None:
    a = Rule("5/minute; 100/hour", "/x", name="a", key=lambda r: "ip:1")
    b = Rule("10/second", "/x", name="b", key=lambda r: "user:7")
    policy = RateLimitPolicy([a, b], prefix="app")
    rules = policy.match("GET", "/x")
    assert rules == (a, b)
    prepared = policy.prepare(rules, ["ip:1", "user:7"])
    assert prepared is not None
    batch, keys = prepared
    assert len(batch.plan.rates) == 3
    assert keys[0].startswith("gk:app:{ip:1}:a:") and keys[2].startswith("gk:app:{user:7}:b:")
    assert batch.names == ("a.1", "a.2", "b")
    assert batch.policy_header == '"a.1";q=5;w=60, "a.2";q=100;w=3600, "b";q=10;w=1'
    # a rule whose key is None is skipped
    prepared = policy.prepare(rules, [None, "user:7"])
    assert prepared is not None and prepared[0].rules == (b,)
    assert policy.prepare(rules, [None, None]) is None
    with pytest.raises(TypeError, match="non-empty string"):
        policy.prepare(rules, ["", "x"])

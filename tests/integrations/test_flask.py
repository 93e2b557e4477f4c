"""Flask: the extension with Flask's own test client, over every backend."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify

from gatekeep.flask import RateLimiter
from gatekeep.ratelimit import Rule, header


def make_app(backend: Any, prefix: str, **options: Any) -> tuple[Flask, RateLimiter]:
    app = Flask(__name__)
    app.config["GATEKEEP_RATELIMIT"] = {
        "default": "3/minute",
        "exempt": ["/static/**"],
        "rules": [Rule("2/minute", "/api/**", name="api")],
    }
    limiter = RateLimiter(backend=backend, prefix=prefix, **options)

    @app.get("/")
    def index() -> str:
        return "home"

    @app.post("/login")
    @limiter.limit("1/minute", name="login")
    def login() -> str:
        return "in"

    @app.get("/health")
    @limiter.exempt
    def health() -> str:
        return "ok"

    @app.get("/api/items")
    @limiter.limit("10/minute", key=header("x-api-key"), name="api-key")
    def items() -> Any:
        return jsonify([1, 2])

    limiter.init_app(app)
    return app, limiter


def test_default_view_limits_and_exempt(backend: Any, prefix: str) -> None:
    app, _ = make_app(backend, prefix, legacy_headers=True)
    c = app.test_client()
    statuses = [c.get("/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = c.get("/")
    assert r.headers["RateLimit-Policy"] == '"default";q=3;w=60'
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.json is not None and r.json["error"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    # a view's own limit is a rule: the default does not apply to it
    assert [c.post("/login").status_code for _ in range(2)] == [200, 429]
    r = c.get("/health")
    assert r.status_code == 200 and "RateLimit" not in r.headers
    assert c.get("/missing").status_code == 429  # 404s spend the default too


def test_path_rule_and_view_rule_checked_together(backend: Any, prefix: str) -> None:
    app, _ = make_app(backend, prefix)
    c = app.test_client()
    r = c.get("/api/items", headers={"X-Api-Key": "k1"})
    assert r.status_code == 200
    assert r.headers["RateLimit-Policy"] == '"api";q=2;w=60, "api-key";q=10;w=60'
    assert r.headers["RateLimit"].startswith('"api";r=1;t=')
    assert c.get("/api/items").status_code == 200  # no key: only the path rule applies
    r = c.get("/api/items", headers={"X-Api-Key": "k1"})
    assert r.status_code == 429
    assert '"api-key";r=9;' in r.headers["RateLimit"]  # the denial spent nothing


def test_shadow_mode_and_bad_config() -> None:
    app = Flask(__name__)
    limiter = RateLimiter(app, default="1/minute", shadow=True)

    @app.get("/")
    def index() -> str:
        return "x"

    c = app.test_client()
    assert [c.get("/").status_code for _ in range(3)] == [200, 200, 200]
    with app.app_context():
        assert limiter.policy.stats.shadow_denied == 2
    with pytest.raises(ValueError, match="on_error"):
        RateLimiter(Flask(__name__), on_error="maybe")


def test_backend_down_fails_open() -> None:
    from gatekeep import RedisBackend

    app = Flask(__name__)
    RateLimiter(
        app,
        default="1/minute",
        backend=RedisBackend("redis://127.0.0.1:1/0", socket_connect_timeout=0.2),
    )

    @app.get("/")
    def index() -> str:
        return "x"

    c = app.test_client()
    assert [c.get("/").status_code for _ in range(2)] == [200, 200]


def test_settle_rule_after_the_response() -> None:
    from gatekeep import MemoryBackend

    app = Flask(__name__)

    @app.get("/llm")
    def llm() -> Any:
        return "ok", 200, {"X-Tokens-Used": "6"}

    RateLimiter(
        app,
        rules=[Rule("10/minute", name="llm", settle="x-tokens-used")],
        backend=MemoryBackend(),
    )
    c = app.test_client()
    first = c.get("/llm")
    first.close()  # the server closes the response: the settlement
    assert first.headers["RateLimit"].startswith('"llm";r=9;')
    second = c.get("/llm")
    assert second.headers["RateLimit"].startswith('"llm";r=3;')  # 6, then 1

"""End to end: each example app in its own process, behind a real server (uvicorn,
werkzeug, wsgiref), driven by a real HTTP client over loopback, on memory and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatekeep.testing import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: example -> (paths: home, login, health)
APPS = {
    "starlette_app": ("/", "/login", "/health"),
    "fastapi_app": ("/", "/login", "/health"),
    "flask_app": ("/", "/login", "/health"),
    "django_app": ("/", "/login/", "/health/"),
}
#: example -> (session cookie, counter path, logout path)
SESSIONS = {
    "starlette_app": ("session", "/counter", "/logout"),
    "fastapi_app": ("session", "/counter", "/logout"),
    "flask_app": ("session", "/counter", "/logout"),
    "django_app": ("sessionid", "/counter/", "/logout/"),
}
CREDENTIALS = {"username": "alice", "password": "wonderland"}


class Running:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **env, "PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py")],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=EXAMPLES,
        )
        health = APPS[name][2]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"{name} exited: {out}")
            try:
                if httpx.get(self.base + health, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{name} did not start within 20 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_env(request: pytest.FixtureRequest, server_factory: Any) -> dict[str, str]:
    if request.param == "memory":
        return {}
    # a private server per test: limits are per client address, all of them 127.0.0.1
    return {"GATEKEEP_REDIS_URL": server_factory("redis").url}


@pytest.fixture(params=list(APPS))
def running(request: pytest.FixtureRequest, store_env: dict[str, str]) -> Iterator[Running]:
    app = Running(request.param, store_env)
    yield app
    app.stop()


def test_example_limits_over_http(running: Running, request: pytest.FixtureRequest) -> None:
    name = request.node.callspec.params["running"]
    home, login, health = APPS[name]
    with httpx.Client(base_url=running.base, timeout=5) as c:
        # a client not behind a trusted proxy cannot change its identity
        statuses = []
        for i in range(6):
            r = c.get(
                home,
                headers={"X-Forwarded-For": f"198.51.100.{i}", "Forwarded": f"for=198.51.100.{i}"},
            )
            statuses.append(r.status_code)
        assert statuses == [200] * 5 + [429]
        assert '"default";q=5;w=60' in r.headers["ratelimit-policy"]
        assert r.headers["ratelimit"].startswith('"default";r=0;t=')
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"] == "rate_limited"
        # malformed forwarding headers are never a 500
        for value in ("", ",,,", "[::1", 'for="', "999.1.1.1", "a" * 300):
            r = c.get(home, headers={"X-Forwarded-For": value, "Forwarded": value})
            assert r.status_code == 429
        r = c.get(health)
        assert r.status_code == 200 and "ratelimit" not in r.headers
        logins = [c.post(login, json=CREDENTIALS).status_code for _ in range(3)]
        assert logins == [200, 200, 429]


def test_example_sessions_over_http(running: Running, request: pytest.FixtureRequest) -> None:
    """Log in (a new id), count, log out (destroyed), through a real cookie jar."""
    name = request.node.callspec.params["running"]
    login = APPS[name][1]
    cookie, counter, logout = SESSIONS[name]
    anonymous = {"count": 1, "user": None}
    with httpx.Client(base_url=running.base, timeout=5) as c:
        r = c.get(counter)
        assert r.json() == anonymous
        header = r.headers["set-cookie"]
        assert "httponly" in header.lower() and "samesite=lax" in header.lower()
        first = c.cookies[cookie]
        r = c.get(counter)
        assert r.json() == {"count": 2, "user": None} and c.cookies[cookie] == first
        if name != "django_app":  # Django sends its cookie again on every save
            assert "set-cookie" not in r.headers
        r = c.post(login, json={**CREDENTIALS, "password": "guess"})
        assert r.status_code == 401 and c.cookies[cookie] == first
        r = c.post(login, json=CREDENTIALS)
        assert r.status_code == 200 and r.json() == {"user": "alice"}
        second = c.cookies[cookie]
        assert second != first  # log-in rotated the id; the data came along
        assert c.get(counter).json() == {"count": 3, "user": "alice"}
        with httpx.Client(base_url=running.base, timeout=5, cookies={cookie: first}) as old:
            assert old.get(counter).json() == anonymous  # the pre-login id is dead
        r = c.post(logout)
        assert r.status_code == 200 and cookie not in c.cookies  # the cookie was deleted
        assert c.get(counter).json() == anonymous
        with httpx.Client(base_url=running.base, timeout=5, cookies={cookie: second}) as old:
            assert old.get(counter).json() == anonymous  # logged out for good
        # tampered and garbage cookies: a fresh session, never a 500
        for value in (
            second[:-1] + ("A" if second[-1] != "A" else "B"),
            "x" * 5000,
            "",
            "%00",
            second + second,
        ):
            with httpx.Client(base_url=running.base, timeout=5, cookies={cookie: value}) as bad:
                assert bad.get(counter).json() == anonymous


def test_fastapi_behind_a_trusted_proxy(store_env: dict[str, str]) -> None:
    app = Running("fastapi_app", {**store_env, "GATEKEEP_TRUSTED_PROXIES": "127.0.0.1/32"})
    try:
        with httpx.Client(base_url=app.base, timeout=5) as c:
            for _ in range(5):
                assert c.get("/", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 200
            assert c.get("/", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 429
            # the proxy vouches for another client: its own budget
            assert c.get("/", headers={"X-Forwarded-For": "203.0.113.8"}).status_code == 200
            # per-route dependency, counted per route template
            statuses = [
                c.get(f"/items/{i}", headers={"X-Forwarded-For": "203.0.113.9"}).status_code
                for i in range(4)
            ]
            assert statuses == [200, 200, 200, 429]
    finally:
        app.stop()


def test_fastapi_example_exposes_metrics(store_env: dict[str, str]) -> None:
    app = Running("fastapi_app", store_env)
    try:
        with httpx.Client(base_url=app.base, timeout=5) as c:
            statuses = [c.get("/").status_code for _ in range(6)]
            assert statuses == [200] * 5 + [429]
            c.post("/login", json=CREDENTIALS)
            c.get("/counter")
            text = c.get("/metrics/").text  # never limited (exempt)
            assert c.get("/metrics/").status_code == 200
        assert 'gatekeep_decisions_total{result="allowed",rule="default"} 5.0' in text
        assert 'gatekeep_decisions_total{result="denied",rule="default"} 1.0' in text
        assert "gatekeep_backend_latency_seconds_bucket" in text
        assert 'gatekeep_session_operations_total{operation="save"}' in text
    finally:
        app.stop()


def test_starlette_websocket_refused_over_http() -> None:
    """The WebSocket handshake is refused by uvicorn once the budget is spent."""
    app = Running("starlette_app", {})
    try:
        with httpx.Client(base_url=app.base, timeout=5) as c:
            for _ in range(5):
                c.get("/")
            headers = {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            }
            r = c.get("/ws", headers=headers)
            # uvicorn offers the websocket.http.response extension: a real 429
            assert r.status_code == 429
            assert r.headers["retry-after"] and r.json()["error"] == "rate_limited"
    finally:
        app.stop()

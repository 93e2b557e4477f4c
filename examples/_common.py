"""Settings shared by the examples, read from the environment.

GATEKEEP_REDIS_URL       use Redis (e.g. redis://127.0.0.1:6379/0); in-process memory if unset
GATEKEEP_TRUSTED_PROXIES comma-separated networks whose X-Forwarded-For is believed
SECRET_KEY               signs the session cookie (a fixed development key if unset)
PORT                     where to listen (8000)

Every example has the same session routes: ``POST /login`` with JSON
``{"username": "alice", "password": "wonderland"}`` (a new session id on log-in),
``GET /counter`` (a counter in the session) and ``POST /logout`` (the session is
destroyed). The cookie is sent without ``Secure`` because the examples serve plain
http on 127.0.0.1; behind HTTPS, leave gatekeep's default (``https_only=True``).
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from gatekeep import MemoryBackend, RedisBackend
from gatekeep.ratelimit import Rule, client_ip
from gatekeep.sessions import SessionStore

PORT = int(os.environ.get("PORT", "8000"))
HOST = "127.0.0.1"
SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-not-a-secret")
#: The demo's one account (a real app checks a password hash in its database).
USERS = {"alice": "wonderland"}
#: The session routes share one budget, instead of the default's 5 per minute.
SESSION_RULE = Rule("60/minute", ["GET /counter", "POST /logout"], name="session")


def backend() -> Any:
    url = os.environ.get("GATEKEEP_REDIS_URL")
    return RedisBackend(url) if url else MemoryBackend()


def key() -> client_ip:
    trusted = [n for n in os.environ.get("GATEKEEP_TRUSTED_PROXIES", "").split(",") if n]
    return client_ip(trusted=trusted)


def session_store() -> SessionStore:
    """Sessions in Redis (or in this process): 30 minutes idle, 8 hours at most."""
    url = os.environ.get("GATEKEEP_REDIS_URL")
    return SessionStore(
        RedisBackend(url) if url else None,
        prefix="examples",
        idle_timeout=30 * 60,
        absolute_timeout=8 * 3600,
    )


def check_password(credentials: Any) -> str | None:
    """The user name when ``credentials`` (a dict) are right, else None."""
    if not isinstance(credentials, dict):
        return None
    username, password = credentials.get("username"), credentials.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return None
    expected = USERS.get(username, "")
    if secrets.compare_digest(password.encode(), expected.encode()) and expected:
        return username
    return None

"""Settings shared by the examples, read from the environment.

GATEKEEP_REDIS_URL       use Redis (e.g. redis://127.0.0.1:6379/0); in-process memory if unset
GATEKEEP_TRUSTED_PROXIES comma-separated networks whose X-Forwarded-For is believed
PORT                     where to listen (8000)
"""

from __future__ import annotations

import os
from typing import Any

from gatekeep import MemoryBackend, RedisBackend
from gatekeep.ratelimit import client_ip

PORT = int(os.environ.get("PORT", "8000"))
HOST = "127.0.0.1"


def backend() -> Any:
    url = os.environ.get("GATEKEEP_REDIS_URL")
    return RedisBackend(url) if url else MemoryBackend()


def key() -> client_ip:
    trusted = [n for n in os.environ.get("GATEKEEP_TRUSTED_PROXIES", "").split(",") if n]
    return client_ip(trusted=trusted)

"""The app the Cluster fault test serves through uvicorn, in its own process.

``python tests/ha/fault_app.py <port> <redis+cluster:// URL>``: ``RateLimitMiddleware(
SessionMiddleware(app))`` over one ``FailoverBackend`` (policy ``"local"``), which the
session store shares. Every request names its rate-limit key in ``x-key`` (the key
function returns it as is, so the key's hash tag, and so its slot, is that value).

Test-only instrumentation, outside the library:

- ``x-decided-by`` on every response: ``fallback`` when the in-process fallback
  decided the request's rate limit, else ``redis``. The fallback passed to the
  ``FailoverBackend`` is a ``MemoryBackend`` that marks the request it decides for
  (a context variable holds the request's mark: the limiter runs in the request's task);
- ``GET /_stats``: the backend's fallback calls per breaker (per shard) and the
  session store's counters.

Routes: ``/hot`` (the tight limit of ``HOT``), ``/set?v=N`` (session ``n`` = N),
``/write`` (``n`` + 1), any other path reads the session. The session routes answer
``{"n", "replica", "state"}``.
"""

from __future__ import annotations

import contextvars
import json
import sys
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from gatekeep.backends.connect import connect
from gatekeep.backends.failover import FailoverBackend
from gatekeep.backends.memory import MemoryBackend
from gatekeep.ratelimit import Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.sessions import SessionStore
from gatekeep.sessions.asgi import SessionMiddleware

DEADLINE = 0.25
#: The tight limit on ``/hot``: the fallback must deny some of it during the outage.
HOT = "40/second burst 8"
#: Every other path: a limit the load never reaches.
LOOSE = "100000/second"

_MARK: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("mark", default=None)


class MarkingMemory(MemoryBackend):
    """The in-process fallback, marking the request it decides for."""

    def limit(self, *args: Any, **kwargs: Any) -> list[int]:
        mark = _MARK.get()
        if mark is not None:
            mark[0] = True
        return super().limit(*args, **kwargs)


def x_key(request: Any) -> str | None:
    value = request.header("x-key")
    return value or None


async def _send_json(send: Any, status: int, data: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(data).encode()})


def build(url: str) -> Any:
    backend = FailoverBackend(
        connect(url, timeout=DEADLINE),
        MarkingMemory(),
        policy="local",
        recovery_time=0.5,
        metrics=None,
    )
    store = SessionStore(backend, prefix="ft", metrics=None)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = scope["session"]
        path = scope["path"]
        if path == "/set":
            session["n"] = int(parse_qs(scope["query_string"].decode())["v"][0])
        elif path == "/write":
            session["n"] = session.get("n", 0) + 1
        elif path == "/hot":
            await _send_json(send, 200, {})
            return
        await _send_json(
            send,
            200,
            {"n": session.get("n"), "replica": session.from_replica, "state": session.state},
        )

    stack = RateLimitMiddleware(
        SessionMiddleware(app, secret_key="k", store=store, https_only=False),
        rules=[Rule(HOT, "/hot", name="hot")],
        default=LOOSE,
        key=x_key,
        backend=backend,
    )

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await stack(scope, receive, send)
            return
        if scope["path"] == "/_stats":
            stats = {
                "fallback_calls": backend.fallback_calls,
                "fallback_by_breaker": backend.fallback_by_breaker,
                "store": getattr(store.executor, "counters", {}),
            }
            await _send_json(send, 200, stats)
            return
        mark = [False]
        token = _MARK.set(mark)

        async def marked(message: Any) -> None:
            if message["type"] == "http.response.start":
                who = b"fallback" if mark[0] else b"redis"
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (b"x-decided-by", who)],
                }
            await send(message)

        try:
            await stack(scope, receive, marked)
        finally:
            _MARK.reset(token)

    return outer


if __name__ == "__main__":
    port, url = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(
        build(url),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
    )

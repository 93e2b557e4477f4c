"""FastAPI with gatekeep: rate limits for the whole app and per route, and server-side
sessions.

Run:  python examples/fastapi_app.py        (then: curl -i http://127.0.0.1:8000/)

- every route: 5 requests per minute per client (the middleware's default);
- POST /login: 2 per minute instead (the @limit decorator next to the endpoint: a rule
  of the middleware's, checked in its one script call, so the default does not apply
  on top);
- GET /items/{item_id}: 3 per minute per route (a Depends(RateLimit(...)));
- GET /counter and POST /logout: 60 per minute together (a rule);
- /health: never limited (exempt);
- /metrics: gatekeep's own metrics for Prometheus (gatekeep_decisions_total{rule,result},
  gatekeep_backend_latency_seconds, gatekeep_session_operations_total, ...), never limited;
- sessions (gatekeep.sessions.asgi.SessionMiddleware): POST /login with
  {"username": "alice", "password": "wonderland"} logs in with a new session id,
  GET /counter counts in the session, POST /logout destroys it.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from _common import (
    HOST,
    PORT,
    SECRET_KEY,
    SESSION_RULE,
    backend,
    check_password,
    key,
    session_store,
)
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, make_asgi_app

from gatekeep.exporters import PrometheusCollector
from gatekeep.fastapi import RateLimit, limit
from gatekeep.ratelimit import RateLimitPolicy
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.sessions.asgi import SessionMiddleware

policy = RateLimitPolicy(
    default="5/minute",
    exempt=["/health", "/metrics", "/metrics/**"],
    rules=[SESSION_RULE],
    key=key(),
    backend=backend(),
)
app = FastAPI()
app.add_middleware(RateLimitMiddleware, policy=policy)
# https_only=False: the example serves plain http (see _common.py)
app.add_middleware(
    SessionMiddleware, secret_key=SECRET_KEY, store=session_store(), https_only=False
)
items_limit = RateLimit("3/minute", policy=policy)

# /metrics: a registry of its own, with gatekeep's collector (reads gatekeep.stats()).
registry = CollectorRegistry()
registry.register(PrometheusCollector())
app.mount("/metrics", make_asgi_app(registry=registry))


@app.get("/")
async def home() -> dict[str, str]:
    return {"hello": "fastapi"}


@app.post("/login")
@limit("2/minute", policy=policy, name="login")
async def login(request: Request) -> JSONResponse:
    try:
        credentials = await request.json()
    except ValueError:
        credentials = None
    user = check_password(credentials)
    if user is None:
        return JSONResponse({"error": "bad credentials"}, status_code=401)
    request.session.set_user(user)  # log in: a new session id, indexed under the user
    return JSONResponse({"user": user})


@app.get("/counter")
async def counter(request: Request) -> dict[str, Any]:
    request.session["count"] = request.session.get("count", 0) + 1
    return {"count": request.session["count"], "user": request.session.user_id}


@app.post("/logout")
async def logout(request: Request) -> dict[str, bool]:
    request.session.destroy()
    return {"ok": True}


@app.get("/items/{item_id}", dependencies=[Depends(items_limit)])
async def item(item_id: int) -> dict[str, Any]:
    return {"id": item_id}


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


if __name__ == "__main__":
    # proxy_headers=False: uvicorn would otherwise rewrite the client address from
    # X-Forwarded-For for peers on 127.0.0.1 before gatekeep sees it; gatekeep's
    # trusted proxies (GATEKEEP_TRUSTED_PROXIES) are then the one place to configure.
    uvicorn.run(app, host=HOST, port=PORT, log_level="warning", proxy_headers=False)

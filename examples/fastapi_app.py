"""FastAPI with gatekeep: the middleware for the whole app, plus per-route limits.

Run:  python examples/fastapi_app.py        (then: curl -i http://127.0.0.1:8000/)

- every route: 5 requests per minute per client (the middleware's default);
- POST /login: 2 per minute instead (the @limit decorator next to the endpoint; the
  middleware exempts the route so the default does not apply on top);
- GET /items/{item_id}: 3 per minute per route (a Depends(RateLimit(...)));
- /health: never limited (exempt).
"""

from __future__ import annotations

from typing import Any

import uvicorn
from _common import HOST, PORT, backend, key
from fastapi import Depends, FastAPI

from gatekeep.fastapi import RateLimit, limit
from gatekeep.ratelimit import RateLimitPolicy
from gatekeep.ratelimit.asgi import RateLimitMiddleware

policy = RateLimitPolicy(default="5/minute", exempt=["/health", "POST /login"],
                         key=key(), backend=backend())
app = FastAPI()
app.add_middleware(RateLimitMiddleware, policy=policy)
items_limit = RateLimit("3/minute", policy=policy)


@app.get("/")
async def home() -> dict[str, str]:
    return {"hello": "fastapi"}


@app.post("/login")
@limit("2/minute", policy=policy, name="login")
async def login() -> dict[str, bool]:
    return {"logged_in": True}


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

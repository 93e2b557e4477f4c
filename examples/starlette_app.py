"""Starlette with gatekeep's pure ASGI rate-limit middleware.

Run:  python examples/starlette_app.py      (then: curl -i http://127.0.0.1:8000/)

- every route: 5 requests per minute per client (the default);
- POST /login: 2 per minute (a rule);  /health: never limited (exempt);
- /ws: a WebSocket, limited when it connects.
"""

from __future__ import annotations

import uvicorn
from _common import HOST, PORT, backend, key
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from gatekeep.ratelimit import Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "starlette"})


async def login(request: Request) -> JSONResponse:
    return JSONResponse({"logged_in": True})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


app = Starlette(
    routes=[Route("/", home), Route("/login", login, methods=["POST"]),
            Route("/health", health), WebSocketRoute("/ws", ws)],
    middleware=[Middleware(RateLimitMiddleware, default="5/minute",
                           rules=[Rule("2/minute", "POST /login", name="login")],
                           exempt=["/health"], key=key(), backend=backend())],
)

if __name__ == "__main__":
    # proxy_headers=False: uvicorn would otherwise rewrite the client address from
    # X-Forwarded-For for peers on 127.0.0.1 before gatekeep sees it; gatekeep's
    # trusted proxies (GATEKEEP_TRUSTED_PROXIES) are then the one place to configure.
    uvicorn.run(app, host=HOST, port=PORT, log_level="warning", proxy_headers=False)

"""Starlette with gatekeep's pure ASGI rate-limit and session middleware.

Run:  python examples/starlette_app.py      (then: curl -i http://127.0.0.1:8000/)

- every route: 5 requests per minute per client (the default);
- POST /login: 2 per minute (a rule);  /health: never limited (exempt);
- GET /counter and POST /logout: 60 per minute together (a rule);
- /ws: a WebSocket, limited when it connects;
- sessions: POST /login with {"username": "alice", "password": "wonderland"} logs in
  with a new session id, GET /counter counts in the session, POST /logout destroys it.
"""

from __future__ import annotations

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
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from gatekeep.ratelimit import Rule
from gatekeep.ratelimit.asgi import RateLimitMiddleware
from gatekeep.sessions.asgi import SessionMiddleware


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "starlette"})


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


async def counter(request: Request) -> JSONResponse:
    request.session["count"] = request.session.get("count", 0) + 1
    return JSONResponse({"count": request.session["count"], "user": request.session.user_id})


async def logout(request: Request) -> JSONResponse:
    request.session.destroy()
    return JSONResponse({"ok": True})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


app = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login, methods=["POST"]),
        Route("/counter", counter),
        Route("/logout", logout, methods=["POST"]),
        Route("/health", health),
        WebSocketRoute("/ws", ws),
    ],
    middleware=[
        # https_only=False: the example serves plain http (see _common.py)
        Middleware(
            SessionMiddleware, secret_key=SECRET_KEY, store=session_store(), https_only=False
        ),
        Middleware(
            RateLimitMiddleware,
            default="5/minute",
            rules=[Rule("2/minute", "POST /login", name="login"), SESSION_RULE],
            exempt=["/health"],
            key=key(),
            backend=backend(),
        ),
    ],
)

if __name__ == "__main__":
    # proxy_headers=False: uvicorn would otherwise rewrite the client address from
    # X-Forwarded-For for peers on 127.0.0.1 before gatekeep sees it; gatekeep's
    # trusted proxies (GATEKEEP_TRUSTED_PROXIES) are then the one place to configure.
    uvicorn.run(app, host=HOST, port=PORT, log_level="warning", proxy_headers=False)

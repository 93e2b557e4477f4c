"""Small apps the middleware tests call."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


async def show(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.session))


async def inc(request: Request) -> JSONResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return JSONResponse(dict(request.session))


async def other(request: Request) -> JSONResponse:
    request.session["other"] = True
    return JSONResponse(dict(request.session))


async def nested(request: Request) -> JSONResponse:
    request.session.setdefault("cart", [])
    request.session["cart"].append("apple")  # in place
    return JSONResponse(dict(request.session))


async def nothing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def login(request: Request) -> JSONResponse:
    request.session.set_user("alice")  # regenerates the id
    return JSONResponse({"user": request.session.user_id})


async def logout(request: Request) -> JSONResponse:
    request.session.destroy()
    return JSONResponse({})


async def logout_flash(request: Request) -> JSONResponse:
    request.session.destroy()
    request.session["flash"] = "bye"
    return JSONResponse({})


async def clear(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({})


async def boom(request: Request) -> PlainTextResponse:
    request.session["boom"] = True
    return PlainTextResponse("no", status_code=503)


async def lazy(request: Request) -> JSONResponse:
    await request.session.aload()
    return JSONResponse(dict(request.session))


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(dict(websocket.session))
    await websocket.close()


ROUTES: list[Any] = [
    Route("/", show),
    Route("/inc", inc),
    Route("/other", other),
    Route("/nested", nested),
    Route("/nothing", nothing),
    Route("/login", login),
    Route("/logout", logout),
    Route("/logout-flash", logout_flash),
    Route("/clear", clear),
    Route("/boom", boom),
    Route("/lazy", lazy),
    WebSocketRoute("/ws", ws),
]


def starlette_app(**options: Any) -> Starlette:
    from gatekeep.sessions.asgi import SessionMiddleware

    app = Starlette(routes=ROUTES)
    options.setdefault("secret_key", "test-secret-key")
    app.add_middleware(SessionMiddleware, **options)
    return app


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    import json

    session = environ["gatekeep.session"]
    path = environ["PATH_INFO"]
    status = "200 OK"
    if path == "/inc":
        session["n"] = session.get("n", 0) + 1
    elif path == "/logout":
        session.destroy()
    elif path == "/login":
        session.set_user("alice")
    elif path == "/boom":
        session["boom"] = True
        status = "500 Internal Server Error"
    body = b"ok" if path == "/nothing" else json.dumps(dict(session)).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [body]

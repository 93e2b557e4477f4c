"""Flask with gatekeep's rate-limit extension and server-side sessions.

Run:  python examples/flask_app.py          (then: curl -i http://127.0.0.1:8000/)

- every view: 5 requests per minute per client (the default);
- POST /login: 2 per minute (@limiter.limit);  /health: never limited (@limiter.exempt);
- GET /counter and POST /logout: 60 per minute together (a rule);
- sessions (GatekeepSessionInterface: flask.session in gatekeep's store): POST /login
  with {"username": "alice", "password": "wonderland"} logs in with a new session id,
  GET /counter counts in the session, POST /logout destroys it.
"""

from __future__ import annotations

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
from flask import Flask, jsonify, request, session
from flask.typing import ResponseReturnValue

from gatekeep.flask import RateLimiter
from gatekeep.flask_sessions import GatekeepSessionInterface

app = Flask(__name__)
app.config["SECRET_KEY"] = SECRET_KEY
app.config["GATEKEEP_RATELIMIT"] = {"default": "5/minute", "rules": [SESSION_RULE]}
limiter = RateLimiter(key=key(), backend=backend())
# https_only=False: the example serves plain http (see _common.py)
GatekeepSessionInterface(session_store(), https_only=False).init_app(app)


@app.get("/")
def home() -> ResponseReturnValue:
    return jsonify(hello="flask")


@app.post("/login")
@limiter.limit("2/minute", name="login")
def login() -> ResponseReturnValue:
    user = check_password(request.get_json(silent=True))
    if user is None:
        return jsonify(error="bad credentials"), 401
    session.set_user(user)  # type: ignore[attr-defined]  # log in: a new session id
    return jsonify(user=user)


@app.get("/counter")
def counter() -> ResponseReturnValue:
    session["count"] = session.get("count", 0) + 1
    return jsonify(count=session["count"], user=session.user_id)  # type: ignore[attr-defined]


@app.post("/logout")
def logout() -> ResponseReturnValue:
    session.destroy()  # type: ignore[attr-defined]
    return jsonify(ok=True)


@app.get("/health")
@limiter.exempt
def health() -> ResponseReturnValue:
    return jsonify(ok=True)


limiter.init_app(app)

if __name__ == "__main__":
    app.run(host=HOST, port=PORT)  # werkzeug's WSGI server

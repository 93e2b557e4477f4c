"""Flask with gatekeep's extension.

Run:  python examples/flask_app.py          (then: curl -i http://127.0.0.1:8000/)

- every view: 5 requests per minute per client (the default);
- POST /login: 2 per minute (@limiter.limit);  /health: never limited (@limiter.exempt).
"""

from __future__ import annotations

from _common import HOST, PORT, backend, key
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from gatekeep.flask import RateLimiter

app = Flask(__name__)
app.config["GATEKEEP_RATELIMIT"] = {"default": "5/minute"}
limiter = RateLimiter(key=key(), backend=backend())


@app.get("/")
def home() -> ResponseReturnValue:
    return jsonify(hello="flask")


@app.post("/login")
@limiter.limit("2/minute", name="login")
def login() -> ResponseReturnValue:
    return jsonify(logged_in=True)


@app.get("/health")
@limiter.exempt
def health() -> ResponseReturnValue:
    return jsonify(ok=True)


limiter.init_app(app)

if __name__ == "__main__":
    app.run(host=HOST, port=PORT)  # werkzeug's WSGI server

"""Rate limiting for web apps: rules, key functions and headers shared by every
framework (a sans-I/O core), with thin ASGI, WSGI, FastAPI, Flask and Django shells.

>>> from gatekeep.ratelimit import Rule, client_ip
>>> from gatekeep.asgi import RateLimitMiddleware
>>> app = RateLimitMiddleware(app, default="100/minute",              # doctest: +SKIP
...                           rules=[Rule("5/minute", "POST /login", name="login")])
"""

from __future__ import annotations

from .core import Outcome, RateLimitPolicy, Stats
from .headers import Denial, denial_json
from .ip import TrustedProxies
from .keys import KeyFunc, client_ip, header, session, user
from .request import ASGIRequest, RequestView, WSGIRequest
from .rules import Rule

__all__ = [
    "ASGIRequest",
    "Denial",
    "KeyFunc",
    "Outcome",
    "RateLimitPolicy",
    "RequestView",
    "Rule",
    "Stats",
    "TrustedProxies",
    "WSGIRequest",
    "client_ip",
    "denial_json",
    "header",
    "session",
    "user",
]

"""WSGI middleware (Flask, Django, any WSGI app): rate limiting and sessions.

>>> from gatekeep.wsgi import RateLimitMiddleware, SessionMiddleware
"""

from __future__ import annotations

from .ratelimit.wsgi import RateLimitMiddleware
from .sessions.wsgi import SessionMiddleware

__all__ = ["RateLimitMiddleware", "SessionMiddleware"]

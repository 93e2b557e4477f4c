"""ASGI middleware (Starlette, FastAPI, any ASGI app): rate limiting and sessions.

>>> from gatekeep.asgi import RateLimitMiddleware, SessionMiddleware
"""

from __future__ import annotations

from .ratelimit.asgi import RateLimitMiddleware
from .sessions.asgi import SessionMiddleware

__all__ = ["RateLimitMiddleware", "SessionMiddleware"]

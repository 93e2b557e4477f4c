"""Per-view limits and exemptions for Django (read by the middleware, which finds the view
with Django's URL resolver before the rest of the stack runs).

>>> @ratelimit("5/minute", name="login")
... def login(request): ...

For a class-based view, decorate what ``as_view()`` returns (in urls.py):
``ratelimit("5/minute")(MyView.as_view())``: the marks live on the view function.
"""

from __future__ import annotations

from ..ratelimit.views import exempt as ratelimit_exempt
from ..ratelimit.views import limit as ratelimit

__all__ = ["ratelimit", "ratelimit_exempt"]

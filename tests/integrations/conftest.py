from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from django_setup import configure

from gatekeep import RedisBackend

configure()  # Django settings, once, before any test module imports django.contrib


@pytest.fixture
async def abackend(backend: Any) -> AsyncIterator[Any]:
    """``backend``, with its asyncio client closed on this test's event loop."""
    yield backend
    if isinstance(backend, RedisBackend):
        await backend.aclose()

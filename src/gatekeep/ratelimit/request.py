"""What a key function or a rule sees of a request, whatever the framework.

Each front door (ASGI, WSGI, Django, Flask) wraps its request in a small
:class:`RequestView`; key functions read only this, so one key function works
behind every framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .ip import UNIX_PEER

__all__ = ["ASGIRequest", "RequestView", "WSGIRequest"]


class RequestView:
    """A read-only view of one request. Subclasses fill in the fields lazily."""

    __slots__ = ()

    #: The framework's own request object (ASGI scope, WSGI environ, Django request).
    raw: Any

    @property
    def method(self) -> str:
        raise NotImplementedError

    @property
    def path(self) -> str:
        raise NotImplementedError

    @property
    def peer(self) -> str | None:
        """The address the server saw (the TCP peer), ``"unix"`` for a unix-socket
        peer, or None."""
        raise NotImplementedError

    def headers(self, name: str) -> list[str]:
        """Every value of header ``name`` (lowercase), in order; latin-1 decoded."""
        raise NotImplementedError

    def header(self, name: str) -> str | None:
        values = self.headers(name)
        return values[0] if values else None

    @property
    def user(self) -> Any:
        """The authenticated user, when the framework has one (``scope["user"]``)."""
        return None

    @property
    def session(self) -> Any:
        return None


class ASGIRequest(RequestView):
    __slots__ = ("raw",)

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.raw = scope

    @property
    def method(self) -> str:
        return self.raw.get("method", "GET") if self.raw["type"] == "http" else "WEBSOCKET"

    @property
    def path(self) -> str:
        return self.raw["path"]  # type: ignore[no-any-return]

    @property
    def peer(self) -> str | None:
        client = self.raw.get("client")
        if client:
            return str(client[0])
        # ASGI: a unix socket server is ``[path, None]``, and its peers have no address.
        server = self.raw.get("server")
        if server and len(server) == 2 and server[1] is None:
            return UNIX_PEER
        return None

    def headers(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.raw.get("headers", ()) if k == key]

    @property
    def user(self) -> Any:
        return self.raw.get("user")

    @property
    def session(self) -> Any:
        return self.raw.get("session")


class WSGIRequest(RequestView):
    """A WSGI environ (Django's ``request.META`` is one too)."""

    __slots__ = ("_session", "_user", "raw")

    def __init__(
        self, environ: Mapping[str, Any], *, user: Any = None, session: Any = None
    ) -> None:
        self.raw = environ
        self._user = user
        self._session = session

    @property
    def method(self) -> str:
        return str(self.raw.get("REQUEST_METHOD", "GET")).upper()

    @property
    def path(self) -> str:
        # PEP 3333 gives PATH_INFO as latin-1 decoded bytes; undo it for UTF-8 paths.
        script = self.raw.get("SCRIPT_NAME", "") or ""
        path = script + (self.raw.get("PATH_INFO", "") or "")
        if path.isascii():  # the same in latin-1 and UTF-8
            return path
        try:
            return path.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return path

    @property
    def route_path(self) -> str:
        """The app-relative path (``PATH_INFO``; ``SCRIPT_NAME`` is where the app is
        mounted), as a rule sees it."""
        path = str(self.raw.get("PATH_INFO", "") or "")
        if path.isascii():  # the same in latin-1 and UTF-8
            return path
        try:
            return path.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return path

    @property
    def peer(self) -> str | None:
        return self.raw.get("REMOTE_ADDR") or None

    def headers(self, name: str) -> list[str]:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = self.raw.get(key)
        # A WSGI server joins repeated fields with ", "; hand them back as one value.
        return [value] if isinstance(value, str) else []

    @property
    def user(self) -> Any:
        return self._user

    @property
    def session(self) -> Any:
        return self._session

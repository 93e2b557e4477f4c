"""The data half of a session: a ``dict`` that checks its writes and knows its size.

:class:`~gatekeep.sessions.Session` builds on it. The data lives in the dict itself, so
the C fast paths that read a dict's storage see it; every method goes through
``_use()`` first (where a session counts the use, and loads itself if need be), and
every write is measured before it happens: a value that is not JSON raises
``TypeError``, one that would make the whole exceed ``max_size`` raises
:class:`SessionTooLarge`, and nothing is changed either way.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from typing import Any, SupportsIndex

from ._json import dump_value

__all__ = ["SCALARS", "SessionTooLarge", "TrackedDict", "size_of"]

#: Value types that cannot change in place: the JSON text measured when such a value
#: is set (or loaded) stays its text, so it is kept (``TrackedDict._texts``) and never
#: encoded again. Exact types only (a subclass may encode otherwise, or change).
SCALARS = frozenset({str, int, float, bool, type(None)})


class SessionTooLarge(ValueError):
    """A session's JSON would exceed the store's ``max_size``."""


def size_of(key: str, text: str) -> int:
    """Bytes of JSON a key and its value's text take (``text`` is ASCII)."""
    if key.isascii():  # a flag of the str: no encoding needed
        return len(key) + len(text)
    try:
        return len(key.encode()) + len(text)
    except UnicodeEncodeError:
        raise TypeError(
            f"session key {key!r} cannot be saved: it is not valid Unicode (a lone surrogate)"
        ) from None


# The dict's own methods: they read or write the storage without counting a use.
_get = dict.get
_set = dict.__setitem__
_len = dict.__len__
_items = dict.items
_keys = dict.keys
_MISSING: Any = object()


class TrackedDict(dict[str, Any]):
    """A ``dict`` of JSON values whose writes are checked and measured (see the module)."""

    __slots__ = ("_cleared", "_size", "_sizes", "_texts", "accessed", "max_size")

    def __init__(self, max_size: int | None = None) -> None:
        #: Set by any read or write of the data.
        self.accessed = False
        #: Bytes of JSON (keys and values) it may hold; None: no limit here.
        self.max_size = max_size
        #: Bytes of JSON of each key as last measured (set, loaded or saved): in-place
        #: changes of nested values are measured again at save time only.
        self._sizes: dict[str, int] = {}
        self._size = 0
        #: JSON text of each value of a :data:`SCALARS` type, as measured (set or
        #: loaded): the current value's text, kept by every write.
        self._texts: dict[str, str] = {}
        #: clear() was called.
        self._cleared = False

    def _use(self) -> None:
        """Called first by every method: a session also loads itself here."""
        self.accessed = True

    # -- writes: measured before they happen -----------------------------------------------

    @staticmethod
    def _text(key: Any, value: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        return dump_value(key, value)

    def _too_large(self, total: int, key: str) -> SessionTooLarge:
        return SessionTooLarge(
            f"setting session[{key!r}] would make the session {total} bytes of JSON, over "
            f"max_size={self.max_size}: keep large data elsewhere and its key in the "
            "session (nothing was changed)"
        )

    def __setitem__(self, key: str, value: Any) -> None:
        self._use()
        text = self._text(key, value)
        size = size_of(key, text)
        sizes = self._sizes
        total = self._size - sizes.get(key, 0) + size
        if self.max_size is not None and total > self.max_size:
            raise self._too_large(total, key)
        _set(self, key, value)
        sizes[key] = size
        self._size = total
        if type(value) in SCALARS:
            self._texts[key] = text
        else:
            self._texts.pop(key, None)

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``, all or nothing: checked in full before any key is set."""
        self._use()
        new = dict(*args, **kwargs)
        sizes = self._sizes
        texts = {key: self._text(key, value) for key, value in new.items()}
        measured = {key: size_of(key, text) for key, text in texts.items()}
        total = self._size + sum(size - sizes.get(key, 0) for key, size in measured.items())
        if self.max_size is not None and total > self.max_size and measured:
            raise self._too_large(total, next(iter(measured)))
        dict.update(self, new)
        sizes.update(measured)
        self._size = total
        kept = self._texts
        for key, value in new.items():
            if type(value) in SCALARS:
                kept[key] = texts[key]
            else:
                kept.pop(key, None)

    def __ior__(self, other: Any) -> TrackedDict:  # type: ignore[override]
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._use()
        value = _get(self, key, _MISSING)
        if value is _MISSING:
            self[key] = value = default
        return value

    def _forget(self, key: str) -> None:
        self._size -= self._sizes.pop(key, 0)
        self._texts.pop(key, None)

    def __delitem__(self, key: str) -> None:
        self._use()
        dict.__delitem__(self, key)
        self._forget(key)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        self._use()
        if default is _MISSING:
            value = dict.pop(self, key)
        else:
            value = dict.pop(self, key, _MISSING)
            if value is _MISSING:
                return default
        self._forget(key)
        return value

    def popitem(self) -> tuple[str, Any]:
        """The last key set, and its value (LIFO, as ``dict.popitem``)."""
        self._use()
        item = dict.popitem(self)
        self._forget(item[0])
        return item

    def clear(self) -> None:
        """Remove every key, including those another request may have added meanwhile."""
        self._use()
        dict.clear(self)
        self._sizes.clear()
        self._texts.clear()
        self._size = 0
        self._cleared = True

    # -- reads -----------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._use()
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self._use()
        return _get(self, key, default)

    def __contains__(self, key: object) -> bool:
        self._use()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._use()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        self._use()
        return dict.__reversed__(self)

    def __len__(self) -> int:
        self._use()
        return _len(self)

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        self._use()
        return _keys(self)

    def values(self) -> ValuesView[Any]:  # type: ignore[override]
        self._use()
        return dict.values(self)

    def items(self) -> ItemsView[str, Any]:  # type: ignore[override]
        self._use()
        return _items(self)

    def copy(self) -> dict[str, Any]:
        """A plain ``dict`` of the data (as ``dict.copy`` gives for a subclass)."""
        self._use()
        return dict(_items(self))

    def __or__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        if not isinstance(other, dict):
            return NotImplemented
        new = self.copy()
        new.update(other)
        return new

    def __ror__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        if not isinstance(other, dict):
            return NotImplemented
        new = dict(other)
        new.update(self.copy())
        return new

    def __eq__(self, other: object) -> bool:
        self._use()
        if isinstance(other, TrackedDict):
            other._use()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        # copy.copy, copy.deepcopy and pickle give a plain dict of the data: the id,
        # the state and the loaders belong to this request only.
        return (dict, (self.copy(),))

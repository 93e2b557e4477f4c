"""Session values as JSON text: the one encoding the store keeps, never pickle.

``dump_value`` is what a save writes and ``load_value`` what a load reads; both skip
json's per-call layers on the hot path and fall back to json's own functions.
"""

from __future__ import annotations

import json
import json.encoder
import json.scanner
from collections.abc import Callable
from typing import Any

__all__ = ["ENCODER", "ERRORS", "FAST_ENCODE", "dump_value", "load_value", "scan"]


def _refuse(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


# ASCII output: every value is valid UTF-8 on the wire, lone surrogates included.
ENCODER = json.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=_refuse
)
ERRORS = (TypeError, ValueError, RecursionError)


def _fast_encoder() -> Callable[[Any], str] | None:
    """``ENCODER.encode`` without its per-call setup: the C encoder it builds on each
    call, built once. It has no circular-reference bookkeeping (shared state, unsafe
    across threads): whatever fails here is encoded again by ``ENCODER``, which
    raises the error it always did."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    ascii_ = json.encoder.encode_basestring_ascii
    try:  # CPython's private constructor: should its signature change, use json's own path
        iterencode = make(None, _refuse, ascii_, None, ":", ",", False, False, False)
    except TypeError:
        return None

    def encode(value: Any) -> str:
        if type(value) is str:
            return ascii_(value)
        return "".join(iterencode(value, 0))

    return encode


FAST_ENCODE = _fast_encoder()


def dump_value(key: str, value: Any) -> str:
    """``value`` as the JSON text the store keeps; a clear ``TypeError`` when it cannot be."""
    if FAST_ENCODE is not None:
        try:
            return FAST_ENCODE(value)
        except ERRORS:
            pass  # the same error, with its usual message, from ENCODER below
    try:
        return ENCODER.encode(value)
    except ERRORS as exc:
        raise TypeError(
            f"session[{key!r}] cannot be saved: {exc}. Sessions hold JSON values only "
            "(str, int, float, bool, None, and lists and dicts of them); store a datetime "
            "as isoformat(), a set as a list, an object as a dict"
        ) from None


_DECODER = json.JSONDecoder()
# The C scanner where there is one (typeshed has it as a class taking a "context"):
#: ``scan(text, 0)`` is ``(value, end)`` for the value at the start of ``text``;
#: StopIteration when there is none (``load_value`` decides the rest).
scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
_scan = scan


def load_value(text: str) -> Any:
    """``json.loads(text)``, without its per-call layers for the texts ``dump_value``
    makes (one value, nothing around it); anything else goes to ``json.loads``."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # not a value at 0 (space first?): json.loads decides
        return json.loads(text)
    if end != len(text):  # something after it: json.loads decides
        return json.loads(text)
    return value

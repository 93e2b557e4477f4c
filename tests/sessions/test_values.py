"""Session values to JSON and back: the fast paths (a C encoder built once, the C
scanner) give exactly what ``json`` gives, errors included."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeep.sessions._json import ENCODER as _ENCODER
from gatekeep.sessions.session import Session, dump_value, load_value

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(values)
def test_dump_value_is_the_encoder(value):
    assert dump_value("k", value) == _ENCODER.encode(value)


def _loads(text):
    try:
        return ("ok", repr(json.loads(text)))
    except ValueError as exc:
        return ("error", type(exc).__name__)


def _load_value(text):
    try:
        return ("ok", repr(load_value(text)))
    except ValueError as exc:
        return ("error", type(exc).__name__)


@given(
    st.one_of(
        values.map(_ENCODER.encode),
        st.text(max_size=12),
        st.tuples(
            st.sampled_from(["", " ", "\n", "x", ",1", "]"]),
            values.map(_ENCODER.encode),
            st.sampled_from(["", " ", "\t", "x", ",1", "]"]),
        ).map("".join),
    )
)
def test_load_value_is_json_loads(text):
    assert _load_value(text) == _loads(text)


@pytest.mark.parametrize(
    "value, message",
    [
        (float("nan"), "Out of range float values are not JSON compliant"),
        ({1j: 1}, "keys must be str, int, float, bool or None"),
        (object(), "object is not JSON-serializable"),
        ({"a": [1, {1, 2}]}, "set is not JSON-serializable"),
    ],
)
def test_errors_keep_their_messages(value, message):
    with pytest.raises(TypeError, match=f"cannot be saved: {message}"):
        dump_value("k", value)


def test_a_circular_value_is_refused_as_before():
    loop: list = []
    loop.append(loop)
    with pytest.raises(TypeError, match="cannot be saved: Circular reference detected"):
        dump_value("k", loop)
    s = Session(id="x", state="pending")
    s.fill([1, 1, 1, 2, 3, "", "v", "1"])
    with pytest.raises(TypeError, match="Circular reference detected"):
        s["v"] = loop  # refused when set
    s["v"] = inner = []
    inner.append(inner)  # in place, the same keys as stored: the values are compared as JSON
    with pytest.raises(TypeError, match="Circular reference detected"):
        s.modified  # noqa: B018  (the property raises)


def test_modified_sees_in_place_changes_and_foreign_text():
    s = Session(id="x", state="pending")
    s.fill([1, 1, 1, 2, 3, "", "cart", '["a"]', "n", "1", "spaced", "[1, 2]"])
    assert dict(s) == {"cart": ["a"], "n": 1, "spaced": [1, 2]}
    assert s.modified  # "[1, 2]" is not how gatekeep writes it: saved again, compact
    s = Session(id="x", state="pending")
    s.fill([1, 1, 1, 2, 3, "", "cart", '["a"]', "n", "1"])
    assert not s.modified
    s["cart"].append("b")
    assert s.modified

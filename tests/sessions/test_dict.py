"""``Session`` is a dict: wherever a dict is expected, and still knowing what changed."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
from starlette.responses import JSONResponse

from gatekeep import SessionTooLarge as TopLevelTooLarge
from gatekeep.sessions import Session, SessionNotLoaded, SessionStore, SessionTooLarge
from gatekeep.sessions.session import NOT_LOADED

T = 1_700_000_000.0


def loaded(data: dict, **options) -> Session:
    """A session as a load leaves it: in the store, nothing changed yet."""
    store = SessionStore(**options)
    sid = store.create(data, now=T).id
    session = store.load(sid, now=T)
    assert session is not None and not session.modified
    return session


def test_it_is_a_dict_to_every_encoder_and_operator():
    s = loaded({"a": 1, "b": [1, 2]})
    assert isinstance(s, dict)
    assert json.dumps(s) == '{"a": 1, "b": [1, 2]}'
    assert json.dumps({"session": s}, separators=(",", ":")) == '{"session":{"a":1,"b":[1,2]}}'
    assert JSONResponse({"session": s}).body == b'{"session":{"a":1,"b":[1,2]}}'
    expected = {"a": 1, "b": [1, 2]}
    assert s == expected and expected == s  # both operand orders
    assert s != {"a": 1}
    assert dict(s) == {**s} == s.copy() == copy.copy(s) == copy.deepcopy(s) == s
    assert type(s.copy()) is dict and type(copy.copy(s)) is dict
    assert type(pickle.loads(pickle.dumps(s))) is dict  # a snapshot of the data
    assert s | {"c": 3} == {"a": 1, "b": [1, 2], "c": 3}
    assert {"c": 3} | s == {"c": 3, "a": 1, "b": [1, 2]}
    assert list(s) == ["a", "b"] and list(reversed(s)) == ["b", "a"] and len(s) == 2
    assert not s.modified  # reads change nothing
    assert s.accessed


def test_changes_through_every_dict_method_are_seen():
    for change, expected in [
        (lambda s: s.__ior__({"c": 3}), {"a": 1, "b": 2, "c": 3}),
        (lambda s: s.update(c=3), {"a": 1, "b": 2, "c": 3}),
        (lambda s: s.setdefault("c", 3), {"a": 1, "b": 2, "c": 3}),
        (lambda s: s.pop("a"), {"b": 2}),
        (lambda s: s.popitem(), {"a": 1}),  # LIFO, as a dict
        (lambda s: s.__delitem__("b"), {"a": 1}),
        (lambda s: s.clear(), {}),
    ]:
        s = loaded({"a": 1, "b": 2})
        change(s)
        assert s == expected and s.modified, expected
    s = loaded({"a": 1})
    s |= {"z": 0}
    assert isinstance(s, Session) and s.modified and s == {"a": 1, "z": 0}


def test_calls_that_change_nothing_leave_it_unmodified():
    s = loaded({"a": 1, "cart": []})
    s.pop("missing", None)
    s.setdefault("a", 2)
    s.update({"a": 1})
    s["cart"] = []
    assert not s.modified


def test_nested_in_place_changes_are_seen_and_saved():
    store = SessionStore()
    sid = store.create({"cart": {"items": []}}, now=T).id
    s = store.load(sid, now=T)
    s["cart"]["items"].append("apple")
    assert s.modified and s.changes().set == {"cart": '{"items":["apple"]}'}
    assert store.save(s, now=T)
    assert store.load(sid, now=T + 1) == {"cart": {"items": ["apple"]}}


def test_a_key_that_held_a_scalar_is_encoded_again_once_it_holds_a_list():
    # The text of a str/int/float/bool/None value is kept from when it was set or
    # loaded; a key rewritten by any method with a list or dict must lose it, or an
    # in-place change of the new value would go unseen.
    writes = [
        lambda s, v: s.__setitem__("a", v),
        lambda s, v: s.update(a=v),
        lambda s, v: s.__ior__({"a": v}),
        lambda s, v: (s.pop("a"), s.setdefault("a", v)),
        lambda s, v: (s.__delitem__("a"), s.__setitem__("a", v)),
        lambda s, v: (s.clear(), s.update({"a": v, "b": "x"})),
    ]
    for write in writes:
        s = loaded({"a": "x", "b": "x"})
        items: list[str] = []
        write(s, items)
        items.append("apple")  # in place, after the write
        assert s.modified
        assert s.changes().set["a"] == '["apple"]'
        # and back to a scalar: its own text, not the list's
        s["a"] = 2.5
        assert s.changes().set["a"] == "2.5"
    s = loaded({"a": "x", "n": 1, "f": 0.5, "t": True, "z": None})
    s["n"], s["f"], s["t"], s["z"] = 1, 0.5, True, None  # equal: the same text
    assert not s.modified and not s.changes()
    s["n"], s["t"] = True, 1  # equal in Python, not in JSON
    assert s.changes().set == {"n": "true", "t": "1"}


def test_popitem_on_an_empty_session_raises_as_a_dict_does():
    with pytest.raises(KeyError):
        Session().popitem()


def pending(loads: list[int] | None) -> Session:
    """A PENDING session; with ``loads``, a sync loader that counts its calls."""
    store = SessionStore()
    sid = store.create({"k": "v"}, now=T).id
    s = store.open(sid)
    if loads is not None:

        def load() -> None:
            loads.append(1)
            store.load_into(s, now=T)

        s.set_loaders(load, None)
    return s


@pytest.mark.parametrize(
    "use",
    [
        json.dumps,
        dict,
        lambda s: {**s},
        lambda s: s | {},
        lambda s: {} | s,
        lambda s: s.copy(),
        lambda s: s == {"k": "v"},
        len,
        bool,
        list,
        lambda s: "k" in s,
        lambda s: s.items(),
        lambda s: s["k"],
        lambda s: s.get("k"),
        lambda s: JSONResponse(s),
        copy.copy,
    ],
    ids=[
        "json.dumps",
        "dict",
        "unpack",
        "or",
        "ror",
        "copy",
        "eq",
        "len",
        "bool",
        "list",
        "in",
        "items",
        "getitem",
        "get",
        "JSONResponse",
        "copy.copy",
    ],
)
def test_a_pending_session_loads_or_refuses_on_every_path(use):
    loads: list[int] = []
    s = pending(loads)
    use(s)
    assert loads == [1] and s.loaded and s.accessed and dict(s) == {"k": "v"}
    use(s)
    assert loads == [1]  # once
    with pytest.raises(SessionNotLoaded, match="aload"):
        use(pending(None))  # no sync loader: says so


def test_mark_accessed_loads_where_it_can_and_never_raises():
    loads: list[int] = []
    s = pending(loads)
    s.mark_accessed()  # what Starlette's request.session calls
    assert loads == [1] and s.accessed and s == {"k": "v"}
    s = pending(None)
    s.mark_accessed()  # lazy=True: request.session.aload() comes next
    assert s.accessed and not s.loaded


def test_the_data_lives_in_the_dict_itself():
    """C code reading a dict's storage directly (dict.__repr__, orjson) sees the data
    once the session is loaded; before, one key that says so (the documented limit)."""
    s = pending([])
    assert dict.__repr__(s) == repr({NOT_LOADED: None})
    s.load()
    assert dict.__repr__(s) == repr({"k": "v"})


def test_a_write_past_max_size_raises_in_the_view_and_changes_nothing():
    s = loaded({"a": "x" * 10}, max_size=100)
    with pytest.raises(SessionTooLarge, match=r"session\['big'\].*max_size=100.*nothing"):
        s["big"] = "y" * 200
    with pytest.raises(SessionTooLarge):
        s.update({"ok": 1, "big": "y" * 200})  # all or nothing
    with pytest.raises(SessionTooLarge):
        s |= {"big": "y" * 200}
    with pytest.raises(SessionTooLarge):
        s.setdefault("big", "y" * 200)
    assert s == {"a": "x" * 10} and not s.modified
    s["a"] = "z" * 80  # replacing a value counts it once
    assert s.modified
    del s["a"]
    s["b"] = "w" * 90  # room freed by the delete
    assert TopLevelTooLarge is SessionTooLarge


def test_a_non_json_value_is_refused_when_set():
    s = Session()
    with pytest.raises(TypeError, match=r"session\['when'\] cannot be saved"):
        s["when"] = object()
    with pytest.raises(TypeError, match="JSON"):
        s.update(when={1, 2})
    assert s == {}

"""Parallel requests on one session: no lost update, no logout undone, no old id back.
Threads use the sync store, tasks the async one; both on every backend."""

from __future__ import annotations

import asyncio
import threading

N = 12


def test_threads_changing_different_keys_all_persist(store):
    sid = store.create({"base": 0}).id
    barrier = threading.Barrier(N)

    def worker(i: int) -> None:
        s = store.load(sid)
        barrier.wait()  # everyone has loaded the old data
        s[f"k{i}"] = i
        assert store.save(s)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert dict(store.load(sid)) == {"base": 0, **{f"k{i}": i for i in range(N)}}


async def test_tasks_changing_different_keys_all_persist(store):
    try:
        sid = (await store.acreate({"base": 0})).id
        # every task loads before any saves (asyncio.Barrier is Python 3.11+)
        loaded = await asyncio.gather(*(store.aload(sid) for _ in range(N)))

        async def worker(i: int) -> None:
            s = loaded[i]
            s[f"k{i}"] = i
            assert await store.asave(s)

        await asyncio.gather(*(worker(i) for i in range(N)))
        assert dict(await store.aload(sid)) == {"base": 0, **{f"k{i}": i for i in range(N)}}
    finally:
        await store.aclose()


def test_threads_cannot_undo_a_logout(store):
    for _round in range(5):
        one_logout_race(store)


def one_logout_race(store) -> None:
    sid = store.create({"n": 0}).id
    logged_out = threading.Event()
    late_saves = []

    def writer(i: int) -> None:
        for j in range(15):
            s = store.load(sid)
            if s is None:
                return
            s[f"w{i}"] = j
            before = logged_out.is_set()
            ok = store.save(s)
            if before and ok:
                late_saves.append((i, j))  # a save that began after the logout

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    victim = store.load(sid)
    assert victim is not None
    store.destroy(victim)
    logged_out.set()
    for t in threads:
        t.join()
    assert late_saves == []
    assert store.load(sid) is None and not store.exists(sid)


async def test_tasks_cannot_undo_a_logout(store):
    try:
        sid = (await store.acreate({"n": 0})).id
        loaded = [await store.aload(sid) for _ in range(N)]
        await store.adestroy(await store.aload(sid))  # log out while they are in flight
        for i, s in enumerate(loaded):
            s[f"k{i}"] = i
        results = await asyncio.gather(*(store.asave(s) for s in loaded))
        assert results == [False] * N
        assert await store.aload(sid) is None
    finally:
        await store.aclose()


def test_regenerate_racing_writers_does_not_resurrect_the_old_id(store):
    s = store.create({"n": 0})
    old = s.id
    barrier = threading.Barrier(5)
    results: list[bool] = []

    def writer(i: int) -> None:
        mine = store.load(old)
        barrier.wait()
        mine[f"w{i}"] = i
        results.append(store.save(mine))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    barrier.wait()
    assert store.regenerate(s)
    for t in threads:
        t.join()
    assert store.load(old) is None and not store.exists(old)
    new = dict(store.load(s.id))
    # Writers that saved before the regenerate moved with the data; the others were refused.
    assert new == {"n": 0, **{f"w{i}": i for i in range(4) if f"w{i}" in new}}
    assert sum(results) == len(new) - 1

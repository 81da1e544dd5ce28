"""Units below the HTTP layer: the few-shot classifier learns and keeps learning, the label cache computes a
(model, task, label) once (also under concurrency and cancellation) within its byte budget, and the
classifier store persists, scopes by owner, caps and refuses lost updates."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from jinaserve.classify.label_cache import LabelCache, LabelKey, LabelVector
from jinaserve.classify.linear import SoftmaxClassifier
from jinaserve.errors import InvalidInputError, ResourceLimitError
from jinaserve.store import Database, open_database
from jinaserve.store.classifiers import ClassifierRecord, SQLiteClassifierStore


# --------------------------------------------------------------------------- the few-shot classifier
def two_classes(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Separable by the sign of the 3rd coordinate, but spread along the 2nd, where the class means also
    differ: a nearest-centroid rule gets a quarter of the points wrong, a linear classifier none."""
    rng = np.random.default_rng(seed)
    a = np.stack([np.ones(n), rng.uniform(-3, 3, n) + 1, np.full(n, 0.15)], axis=1)
    b = np.stack([np.ones(n), rng.uniform(-3, 3, n) - 1, np.full(n, -0.15)], axis=1)
    x = np.hstack([np.vstack([a, b]), 0.01 * rng.normal(size=(2 * n, 5))])
    return x, ["A"] * n + ["B"] * n


def third_class(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.hstack([np.stack([-np.ones(n), rng.uniform(-3, 3, n), np.zeros(n)], axis=1),
                      0.01 * rng.normal(size=(n, 5))])


def accuracy(clf: SoftmaxClassifier, x: np.ndarray, labels: list[str]) -> float:
    return float(np.mean(np.array(clf.labels)[clf.predict_proba(x).argmax(axis=1)] == np.array(labels)))


def test_learns_a_separable_toy_set_that_nearest_centroid_gets_wrong():
    x, y = two_classes(12, seed=0)
    held_x, held_y = two_classes(200, seed=1)
    untrained = SoftmaxClassifier.empty(x.shape[1])
    untrained.fit(x, y, num_iters=0)  # only the initial rows: the class means
    assert accuracy(untrained, x, y) < 0.9
    clf = SoftmaxClassifier.empty(x.shape[1])
    clf.fit(x, y, num_iters=50)
    assert accuracy(clf, x, y) == 1.0 and accuracy(clf, held_x, held_y) >= 0.9
    p = clf.predict_proba(x)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-12)


def test_updates_keep_learning_and_do_not_forget():
    x, y = two_classes(12, seed=0)
    held_x, held_y = two_classes(200, seed=1)
    clf = SoftmaxClassifier.empty(x.shape[1])
    clf.fit(x, y, num_iters=10)  # ten L-BFGS steps are not enough on this ill-conditioned set...
    first = accuracy(clf, x, y)
    assert first < 1.0
    more_x, more_y = two_classes(12, seed=2)
    clf.fit(more_x, more_y, num_iters=10)  # ...an update continues from there, on old and new examples
    assert accuracy(clf, x, y) == 1.0 and accuracy(clf, more_x, more_y) == 1.0
    assert accuracy(clf, held_x, held_y) > first
    clf.fit(third_class(10, seed=3), ["C"] * 10, num_iters=10)  # a new label, only its examples
    assert clf.labels == ["A", "B", "C"] and clf.counts.tolist() == [24, 24, 10]
    assert accuracy(clf, third_class(50, seed=4), ["C"] * 50) == 1.0
    assert accuracy(clf, x, y) == 1.0  # the old labels are still told apart


def test_memory_stays_within_budget_and_round_trips(monkeypatch):
    import jinaserve.classify.linear as linear

    monkeypatch.setattr(linear, "MEMORY_BYTES", 2 * 8 * 2 * 10)  # 8-d float16, 2 labels: 10 per label
    rng = np.random.default_rng(0)
    clf = SoftmaxClassifier.empty(8)
    for _ in range(5):
        clf.fit(rng.normal(size=(30, 8)), ["p", "q"] * 15, num_iters=3)
    assert clf.counts.tolist() == [75, 75] and np.bincount(clf.memory_y).tolist() == [10, 10]
    back = SoftmaxClassifier.from_bytes(clf.labels, clf.to_bytes())
    probe = rng.normal(size=(4, 8))
    np.testing.assert_allclose(back.predict_proba(probe), clf.predict_proba(probe), atol=1e-5)  # float32 storage
    assert back.counts.tolist() == clf.counts.tolist() and back.memory_x.shape == clf.memory_x.shape


# --------------------------------------------------------------------------- the label cache
def vec(i: int) -> LabelVector:
    v = np.zeros(4, dtype=np.float32)
    v[i % 4] = 1
    return LabelVector(v, n_tokens=3)


class Embedder:
    """A compute function that records which keys it was asked for (the cache's only collaborator)."""

    def __init__(self, delay: float = 0.0, fail: Exception | None = None) -> None:
        self.calls: list[list[LabelKey]] = []
        self.delay, self.fail = delay, fail

    async def __call__(self, keys: list[LabelKey]) -> list[LabelVector]:
        self.calls.append(list(keys))
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return [vec(len(k.label)) for k in keys]

    @property
    def computed(self) -> list[LabelKey]:
        return [k for c in self.calls for k in c]


def test_cache_computes_each_model_task_label_once():
    cache, emb = LabelCache(1 << 20), Embedder()
    keys = [LabelKey("m", "classification", "a"), LabelKey("m", "classification", "bb")]
    out = asyncio.run(cache.get_many(keys + keys[:1], emb))
    assert [o.vector.argmax() for o in out] == [1, 2, 1] and emb.computed == keys
    other = [LabelKey("m", "text-matching", "a"), LabelKey("m2", "classification", "a"), keys[0]]
    asyncio.run(cache.get_many(other, emb))
    assert emb.computed == keys + other[:2]  # another task or model is another embedding; keys[0] was cached


def test_cache_is_bounded_by_bytes_least_recently_used_first():
    one = vec(0).vector.nbytes + len("m") + 1 + 200  # vector + key text + per-entry overhead
    cache, emb = LabelCache(3 * one), Embedder()
    keys = [LabelKey("m", None, c) for c in "abcd"]
    asyncio.run(cache.get_many(keys[:3], emb))
    asyncio.run(cache.get_many(keys[:1], emb))  # "a" becomes the most recently used
    asyncio.run(cache.get_many(keys[3:], emb))  # evicts "b"
    assert len(cache) == 3 and cache.size_bytes <= 3 * one
    asyncio.run(cache.get_many([keys[0], keys[2], keys[1]], emb))
    assert emb.computed == [*keys, keys[1]]
    none = LabelCache(0)
    asyncio.run(none.get_many(keys[:1], emb))
    assert len(none) == 0


def test_concurrent_requests_share_one_computation_and_errors():
    async def scenario():
        cache, emb = LabelCache(1 << 20), Embedder(delay=0.05)
        keys = [LabelKey("m", None, f"l{i}") for i in range(5)]
        results = await asyncio.gather(*(cache.get_many(keys[i % 3:], emb) for i in range(6)))
        assert sorted(emb.computed, key=lambda k: k.label) == keys  # each label embedded once
        assert all(len(r) == len(keys[i % 3:]) for i, r in enumerate(results))
        bad, failing = LabelCache(1 << 20), Embedder(delay=0.05, fail=InvalidInputError("label too long"))
        outcomes = await asyncio.gather(*(bad.get_many(keys[:2], failing) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(o, InvalidInputError) for o in outcomes) and len(failing.calls) == 1
        assert len(bad) == 0  # a failure is not cached: the next request tries again

    asyncio.run(scenario())


def test_a_cancelled_computation_is_taken_over_by_its_waiters():
    async def scenario():
        cache, emb = LabelCache(1 << 20), Embedder(delay=0.2)
        keys = [LabelKey("m", None, "x")]
        owner = asyncio.create_task(cache.get_many(keys, emb))
        await asyncio.sleep(0.02)
        waiter = asyncio.create_task(cache.get_many(keys, emb))
        await asyncio.sleep(0.02)
        owner.cancel()  # its client went away
        result = await asyncio.wait_for(waiter, 5)
        assert result[0].n_tokens == 3 and len(emb.calls) == 2

    asyncio.run(scenario())


# --------------------------------------------------------------------------- the store
def record(owner: str = "o1", **kw) -> ClassifierRecord:
    now = time.time()
    base = dict(id=f"id-{owner}-{now}", owner=owner, model="m", input_task="classification", dims=4,
                labels=["a", "b"], access="private", state=b"weights", num_samples=2, created_at=now, updated_at=now)
    return ClassifierRecord(**{**base, **kw})


def test_store_persists_scopes_caps_and_refuses_lost_updates(tmp_path: Path):
    store = SQLiteClassifierStore(open_database(tmp_path))
    r1, r2 = record(id="c1"), record(id="c2")
    store.create(r1, max_per_owner=2)
    store.create(r2, max_per_owner=2)
    store.create(record(id="c3", owner="o2"), max_per_owner=2)
    with pytest.raises(ResourceLimitError, match="at most 2"):
        store.create(record(id="c4"), max_per_owner=2)
    assert [r.id for r in store.owned_by("o1")] == ["c1", "c2"] and store.owned_by("o1")[0].state is None

    fresh = store.get("c1")
    assert fresh is not None and fresh.state == b"weights" and fresh.version == 1
    fresh.labels, fresh.state, fresh.updated_number = ["a", "b", "c"], b"more", 1
    assert store.replace(fresh, expected_version=1)
    stale = record(id="c1", labels=["x"])
    assert not store.replace(stale, expected_version=1)  # another writer got there first: no silent overwrite
    store.mark_used("c1", 123.0)
    assert not store.delete("c1", "o2") and store.delete("c2", "o1")
    store.close()

    again = SQLiteClassifierStore(Database(tmp_path / "jinaserve.db"))  # a restart
    got = again.get("c1")
    assert got is not None and got.labels == ["a", "b", "c"] and got.state == b"more" and got.version == 2
    assert got.used_number == 1 and got.used_at == 123.0 and again.get("c2") is None
    again.close()

"""The few-shot classifier: multinomial logistic regression on unit-length embeddings.

    p(label | x) = softmax(W x + b)

* Training minimises the cross-entropy over every example the classifier has had (+ a small L2 penalty,
  so the weights stay finite on separable data) with L-BFGS (`torch.optim.LBFGS`, strong-Wolfe line
  search), `num_iters` iterations per /v1/train request, starting from the current weights.
* Memory: the classifier keeps its examples' embeddings, up to a byte budget (`MEMORY_BYTES`, float16);
  past the budget, a uniform sample per label (reservoir sampling), each kept example then weighing
  (examples seen of its label) / (examples kept of it). An update with `classifier_id` therefore trains on
  the old examples as well as the new ones: adding a label, or examples of one label, does not make the
  classifier forget the others, and repeated updates keep converging on the whole training set.
* A new label's weight row starts at SCALE × the unit mean of its examples: before any optimiser step
  the model is a nearest-centroid classifier.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

SCALE = 10.0  # initial logit scale of a new label's row (cosine 0.1 apart → logits 1 apart)
L2 = 1e-3  # penalty on ½‖W‖², relative to the mean cross-entropy
MEMORY_BYTES = 4 * 1024 * 1024  # remembered example embeddings per classifier (float16)
MIN_PER_LABEL = 4  # examples kept per label even when that exceeds the budget


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class SoftmaxClassifier:
    labels: list[str]
    weights: np.ndarray  # (labels, dims)
    bias: np.ndarray  # (labels,)
    counts: np.ndarray  # (labels,): examples seen per label, ever
    memory_x: np.ndarray  # (kept, dims) float16: remembered examples
    memory_y: np.ndarray  # (kept,): their label indices

    @classmethod
    def empty(cls, dims: int) -> SoftmaxClassifier:
        return cls([], np.zeros((0, dims)), np.zeros(0), np.zeros(0, dtype=np.int64),
                   np.zeros((0, dims), dtype=np.float16), np.zeros(0, dtype=np.int64))

    @property
    def dims(self) -> int:
        return int(self.weights.shape[1])

    def fit(self, x: np.ndarray, labels: Sequence[str], num_iters: int) -> None:
        """Learn from examples `x` (n × dims) with their `labels`; new labels are added."""
        x = _unit(np.asarray(x, dtype=np.float64))
        index = {label: i for i, label in enumerate(self.labels)}
        new = [label for label in dict.fromkeys(labels) if label not in index]
        for label in new:
            index[label] = len(index)
        y = np.fromiter((index[label] for label in labels), dtype=np.int64, count=len(labels))
        n_labels = len(index)
        counts = np.concatenate([self.counts, np.zeros(len(new), dtype=np.int64)])

        # the remembered examples stand for their label's whole history; this request's count once each
        kept = np.bincount(self.memory_y, minlength=n_labels)
        mem_w = counts[self.memory_y] / np.maximum(kept[self.memory_y], 1)
        xt = np.vstack([self.memory_x.astype(np.float64), x])
        yt = np.concatenate([self.memory_y, y])
        w = np.concatenate([mem_w, np.ones(len(y))])

        means = np.zeros((len(new), x.shape[1]))
        np.add.at(means, y[y >= len(self.labels)] - len(self.labels), x[y >= len(self.labels)])
        weights = np.vstack([self.weights, SCALE * _unit(means)])
        bias = np.concatenate([self.bias, np.zeros(len(new))])
        self.weights, self.bias = _lbfgs(weights, bias, xt, yt, w / w.sum(), num_iters)
        self.labels = [*self.labels, *new]
        self._remember(x, y, counts)

    def _remember(self, x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> None:
        """Per label, a uniform sample (reservoir) of everything seen, within the byte budget."""
        n_labels = len(self.labels)
        cap = max(MIN_PER_LABEL, MEMORY_BYTES // (2 * max(self.dims, 1) * max(n_labels, 1)))
        rng = np.random.default_rng(int(counts.sum()))  # deterministic for a given history
        slots: list[list[np.ndarray]] = [[] for _ in range(n_labels)]
        for row, label in zip(self.memory_x, self.memory_y, strict=True):
            slots[label].append(row)
        for row, label in zip(x.astype(np.float16), y, strict=True):
            counts[label] += 1
            if len(slots[label]) < cap:
                slots[label].append(row)
            else:
                j = int(rng.integers(0, counts[label]))
                if j < cap:
                    slots[label][j] = row
        for label, rows in enumerate(slots):  # a smaller cap (more labels now): keep a random subset
            if len(rows) > cap:
                slots[label] = [rows[i] for i in sorted(rng.choice(len(rows), cap, replace=False))]
        self.counts = counts
        rows = [r for s in slots for r in s]
        self.memory_x = np.stack(rows).astype(np.float16) if rows else np.zeros((0, self.dims), dtype=np.float16)
        self.memory_y = np.fromiter((label for label, s in enumerate(slots) for _ in s), dtype=np.int64,
                                    count=len(rows))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n × labels) probabilities, rows summing to 1, columns in `labels` order."""
        x = _unit(np.asarray(x, dtype=np.float64))
        return softmax(x @ self.weights.T + self.bias)

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float32),
                 counts=self.counts.astype(np.int64), memory_x=self.memory_x.astype(np.float16),
                 memory_y=self.memory_y.astype(np.int64))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, labels: Sequence[str], blob: bytes) -> SoftmaxClassifier:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            a = {k: data[k] for k in ("weights", "bias", "counts", "memory_x", "memory_y")}
        if a["weights"].shape[0] != len(labels):
            raise ValueError(f"stored classifier has {a['weights'].shape[0]} weight rows for {len(labels)} labels")
        return cls(list(labels), a["weights"].astype(np.float64), a["bias"].astype(np.float64),
                   a["counts"].astype(np.int64), a["memory_x"].astype(np.float16), a["memory_y"].astype(np.int64))


def _lbfgs(weights: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray,
           num_iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Minimise Σ w_i · CE(W x_i + b, y_i) + L2/2 · ‖W‖² from the given start, `num_iters` L-BFGS steps."""
    if num_iters < 1:
        return weights, bias
    with torch.enable_grad():
        xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)
        wm = torch.tensor(weights, dtype=torch.float64, requires_grad=True)
        bv = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([wm, bv], lr=1.0, max_iter=num_iters, history_size=10,
                                line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            ce = torch.nn.functional.cross_entropy(xt @ wm.T + bv, yt, reduction="none")
            loss = (ce * wt).sum() + 0.5 * L2 * (wm * wm).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return wm.detach().numpy(), bv.detach().numpy()

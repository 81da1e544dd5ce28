"""The few-shot classifier: multinomial logistic regression on unit-length embeddings.

    p(label | x) = softmax(W x + b)

* A new label's weight row starts at SCALE × (the unit mean of its examples): before any optimiser step
  the model is a nearest-centroid classifier, which already separates well-clustered classes.
* Training minimises the weighted cross-entropy (+ a small L2 penalty, so the weights stay finite on
  separable data) with L-BFGS (torch.optim.LBFGS, strong-Wolfe line search), `num_iters` iterations, over
  this request's examples plus one pseudo-example per label at the running mean of every example that
  label has had. The means are what an update keeps of earlier requests: a later `/v1/train` with only
  some labels (or new ones) moves the weights from where they were without forgetting the other labels.
* State = weights, bias, per-label means and counts: O(labels × dims), whatever the number of examples.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

SCALE = 10.0  # initial logit scale of a label's row (cosine 0.1 apart → logits 1 apart)
L2 = 1e-3  # penalty on ½‖W‖², relative to the (weight-normalised) mean cross-entropy


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
    centroids: np.ndarray  # (labels, dims): mean of every example seen per label
    counts: np.ndarray  # (labels,): examples seen per label

    @classmethod
    def empty(cls, dims: int) -> SoftmaxClassifier:
        return cls([], np.zeros((0, dims)), np.zeros(0), np.zeros((0, dims)), np.zeros(0, dtype=np.int64))

    @property
    def dims(self) -> int:
        return int(self.weights.shape[1])

    def fit(self, x: np.ndarray, labels: Sequence[str], num_iters: int) -> None:
        """Learn from examples `x` (n × dims, unit rows) with their `labels`; new labels are added."""
        x = _unit(np.asarray(x, dtype=np.float64))
        index = {label: i for i, label in enumerate(self.labels)}
        new = [label for label in dict.fromkeys(labels) if label not in index]
        for label in new:
            index[label] = len(index)
        y = np.fromiter((index[label] for label in labels), dtype=np.int64, count=len(labels))
        n_labels = len(index)

        sums = np.zeros((n_labels, x.shape[1]))
        np.add.at(sums, y, x)
        seen = np.bincount(y, minlength=n_labels)
        counts = np.concatenate([self.counts, np.zeros(len(new), dtype=np.int64)]) + seen
        old_sums = np.vstack([self.centroids * self.counts[:, None], np.zeros((len(new), x.shape[1]))])
        centroids = (old_sums + sums) / np.maximum(counts, 1)[:, None]

        weights = np.vstack([self.weights, SCALE * _unit(centroids[len(self.labels):])])
        bias = np.concatenate([self.bias, np.zeros(len(new))])

        # this request's examples (weight 1 each) + one pseudo-example per label (weight n / labels each)
        xt = np.vstack([x, _unit(centroids)])
        yt = np.concatenate([y, np.arange(n_labels)])
        w = np.concatenate([np.ones(len(y)), np.full(n_labels, len(y) / n_labels)])
        weights, bias = _lbfgs(weights, bias, xt, yt, w / w.sum(), num_iters)

        self.labels = [*self.labels, *new]
        self.weights, self.bias, self.centroids, self.counts = weights, bias, centroids, counts

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n × labels) probabilities, rows summing to 1, columns in `labels` order."""
        x = _unit(np.asarray(x, dtype=np.float64))
        return softmax(x @ self.weights.T + self.bias)

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float32),
                 centroids=self.centroids.astype(np.float32), counts=self.counts.astype(np.int64))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, labels: Sequence[str], blob: bytes) -> SoftmaxClassifier:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("weights", "bias", "centroids", "counts")}
        if arrays["weights"].shape[0] != len(labels):
            raise ValueError(f"stored classifier has {arrays['weights'].shape[0]} weight rows for "
                             f"{len(labels)} labels")
        return cls(list(labels), arrays["weights"].astype(np.float64), arrays["bias"].astype(np.float64),
                   arrays["centroids"].astype(np.float64), arrays["counts"].astype(np.int64))


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

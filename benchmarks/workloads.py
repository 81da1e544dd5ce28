"""The benchmark workloads (issue 7) and the texts they send."""

from __future__ import annotations

from dataclasses import dataclass, field

from .textgen import LONG_WORDS, QUERY_WORDS, SHORT_WORDS, make_texts


@dataclass
class Workload:
    key: str
    kind: str  # embed | rerank
    length: str  # short | long | 50 | 500
    clients: int
    per_request: int  # inputs per embeddings request; documents per rerank request
    fmt: str = "base64"
    texts: list[str] = field(default_factory=list, repr=False)
    query: str = ""
    tokens_per_input: float = 0.0  # incl. special tokens; per (query, doc) pair for rerank
    hot_fraction: float = 0.0  # cache workloads: share of inputs repeated from a small hot set
    hot_count: int = 0

    @property
    def label(self) -> str:
        if self.hot_fraction:
            return f"{self.length} {self.clients}×{self.per_request} {self.fmt}, {self.hot_fraction:.0%} repeated"
        if self.kind == "rerank":
            return f"rerank 1 client × {self.per_request} docs of {self.length} tok"
        return f"{self.length} {self.clients}×{self.per_request} {self.fmt}"

    @property
    def st_per_call(self) -> int:
        """Inputs per in-process `encode` call for the sentence-transformers column: one for the latency
        workload, 32 (its default batch) for every throughput workload."""
        return 1 if self.per_request * self.clients == 1 else 32

    @property
    def st_key(self) -> str:
        if self.kind == "rerank":
            return self.key
        return f"st-{self.length}-{self.st_per_call}"


def _embed(length: str, clients: int, per_request: int, fmt: str) -> Workload:
    return Workload(f"{length}-{clients}x{per_request}-{'b64' if fmt == 'base64' else fmt}", "embed", length,
                    clients, per_request, fmt)


ALL_KEYS = [
    "short-1x1-b64", "short-8x32-b64", "short-8x32-float", "short-64x1-b64",
    "long-1x1-b64", "long-8x32-b64", "long-8x32-float", "long-64x1-b64",
    "rerank-32x50", "rerank-32x500", "cache-16x1-b64",
]
HOT_TEXTS = 200  # the cache workload's hot set: 90% of its inputs are one of these


def build_workloads(keys: list[str] | None = None) -> list[Workload]:
    keys = keys or ALL_KEYS
    unknown = [k for k in keys if k not in ALL_KEYS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; known: {', '.join(ALL_KEYS)}")
    short = make_texts(4099, SHORT_WORDS, seed=1)
    long = make_texts(1001, LONG_WORDS, seed=2)
    out: list[Workload] = []
    for key in keys:
        if key.startswith("cache"):
            w = _embed("short", 16, 1, "base64")
            w.key, w.texts, w.hot_fraction, w.hot_count = key, short, 0.9, HOT_TEXTS
            w.tokens_per_input = SHORT_WORDS + 2
        elif key.startswith("rerank"):
            n_tok = int(key.split("x")[1])
            docs = make_texts(257, n_tok, seed=3)
            query = make_texts(1, QUERY_WORDS, seed=4)[0]
            w = Workload(key, "rerank", str(n_tok), 1, 32, texts=docs, query=query,
                         tokens_per_input=QUERY_WORDS + n_tok + 3)
        else:
            length, shape, fmt = key.split("-")
            clients, per = (int(x) for x in shape.split("x"))
            w = _embed(length, clients, per, "base64" if fmt == "b64" else fmt)
            w.texts = short if length == "short" else long
            w.tokens_per_input = (SHORT_WORDS if length == "short" else LONG_WORDS) + 2
        out.append(w)
    return out

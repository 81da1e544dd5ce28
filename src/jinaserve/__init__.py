"""jinaserve: Jina AI embedding and reranking models behind a Jina- and OpenAI-compatible API."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Embedder", "Reranker", "__version__", "cosine_similarity"]


def __getattr__(name: str):  # lazy: `import jinaserve` stays cheap (no torch) until used
    if name in {"Embedder", "Reranker"}:
        from . import inprocess

        return getattr(inprocess, name)
    if name == "cosine_similarity":
        from .outputs import cosine_similarity

        return cosine_similarity
    raise AttributeError(name)

"""Plain data passed from the protocol layer down to the engine: no HTTP, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EmbedInput:
    """One item of a request's `input`: text, pre-tokenised ids, or an image reference."""

    text: str | None = None
    token_ids: list[int] | None = None
    # Image source as the client sent it: URL, base64, data URI, raw bytes, a local path (in-process
    # only) or a PIL image (in-process only). Families that take images resolve it.
    image: Any = None

    @property
    def kind(self) -> str:
        if self.image is not None:
            return "image"
        if self.token_ids is not None:
            return "tokens"
        return "text"


@dataclass
class EmbedOptions:
    task: str | None = None
    dimensions: int | None = None
    normalized: bool = True
    truncate: bool = False
    late_chunking: bool = False
    return_multivector: bool = False
    return_tokenized_input: bool = False  # needs return_multivector
    embedding_type: str = "float"
    # Where the request came from; some options are only legal in-process (local image paths).
    in_process: bool = False


@dataclass
class EmbedJob:
    model: str
    inputs: list[EmbedInput]
    options: EmbedOptions = field(default_factory=EmbedOptions)


@dataclass
class EmbedResult:
    """Per input: a 1-D vector, or a 2-D (tokens × dims) matrix for multi-vector output."""

    vectors: list[np.ndarray]
    total_tokens: int
    # Per input, the token string behind each multi-vector row (`return_tokenized_input`), else None.
    tokenized: list[list[str]] | None = None


@dataclass
class RerankDocument:
    text: str | None = None
    image: Any = None
    # The document exactly as the client sent it (str or dict), echoed back by cross-encoders.
    original: Any = None


@dataclass
class RerankOptions:
    top_n: int | None = None
    return_documents: bool = True
    return_embeddings: bool = False
    instruction: str | None = None
    max_doc_length: int | None = None
    truncate: bool = True


@dataclass
class RerankJob:
    model: str
    query: str
    documents: list[RerankDocument]
    options: RerankOptions = field(default_factory=RerankOptions)


@dataclass
class RerankResult:
    scores: np.ndarray  # one per document, in document order
    total_tokens: int
    embeddings: np.ndarray | None = None  # per document (listwise rerankers with return_embeddings)

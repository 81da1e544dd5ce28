"""Tokenisation shared by the text families: one pass, real token counts, `truncate` semantics."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidInputError, TokenLimitExceededError
from ..jobs import EmbedInput

try:
    from tokenizers import Tokenizer as _RustTokenizer
except ImportError:  # pragma: no cover - tokenizers is a dependency of transformers
    _RustTokenizer = None  # type: ignore[assignment,misc]

# Private copies of fast tokenizers' Rust backends, with truncation and padding off for good.
# transformers' `tokenizer(...)` re-configures the shared backend's truncation/padding state on every call
# (which costs ~0.1 ms per request and is racy between threads); encoding with a fixed-state copy gives the
# same ids (tests/foundation/test_tokenize_fast_path.py) without either problem.
_BACKENDS: weakref.WeakKeyDictionary[Any, tuple[int, Any]] = weakref.WeakKeyDictionary()
_BACKENDS_LOCK = threading.Lock()


def _plain_backend(tokenizer: Any) -> Any | None:
    """A fixed-state copy of a fast tokenizer's Rust backend, or None when there is none to use."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if _RustTokenizer is None or not isinstance(backend, _RustTokenizer):
        return None
    size = backend.get_vocab_size(with_added_tokens=True)
    try:
        cached = _BACKENDS.get(tokenizer)
    except TypeError:  # not weak-referenceable
        return None
    if cached is not None and cached[0] == size:
        return cached[1]
    with _BACKENDS_LOCK:
        plain = _RustTokenizer.from_str(backend.to_str())
        plain.no_truncation()
        plain.no_padding()
        plain.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
        _BACKENDS[tokenizer] = (size, plain)  # re-copied if tokens are added to the tokenizer later
    return plain


def _encode_all(tokenizer: Any, texts: list[str], add_special_tokens: bool, max_tokens: int) -> list[list[int]]:
    plain = _plain_backend(tokenizer)
    if plain is not None:
        if len(texts) == 1:
            return [plain.encode(texts[0], add_special_tokens=add_special_tokens).ids]
        return [e.ids for e in plain.encode_batch(texts, add_special_tokens=add_special_tokens)]
    return _encode_truncated(tokenizer, texts, add_special_tokens, max_tokens + 1)


def _encode_truncated(tokenizer: Any, texts: list[str], add_special_tokens: bool, max_length: int) -> list[list[int]]:
    """transformers' own call, cut to `max_length` tokens (special tokens included)."""
    return tokenizer(texts, add_special_tokens=add_special_tokens, truncation=True, max_length=max_length,
                     padding=False, return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def tokenize(tokenizer: Any, texts: Sequence[str], *, max_tokens: int, truncate: bool,
             add_special_tokens: bool = True, indices: Sequence[int] | None = None) -> list[list[int]]:
    """Token ids per text. Over-length texts are cut (truncate=True) or rejected with a 400."""
    if not texts:
        return []
    enc = _encode_all(tokenizer, list(texts), add_special_tokens, max_tokens)
    over = [i for i, ids in enumerate(enc) if len(ids) > max_tokens]
    if over and not truncate:
        i = indices[over[0]] if indices is not None else over[0]
        raise TokenLimitExceededError(
            f"Input at index {i} is longer than the model's limit of {max_tokens} tokens; "
            f"send shorter text or set truncate=true")
    if over:
        cut = _encode_truncated(tokenizer, [texts[i] for i in over], add_special_tokens, max_tokens)
        for i, ids in zip(over, cut, strict=True):
            enc[i] = ids
    return [list(ids) for ids in enc]


def check_token_ids(ids: Sequence[int], *, vocab_size: int, max_tokens: int, truncate: bool,
                    index: int) -> list[int]:
    """Validate a pre-tokenised input (ids of this model's own tokenizer)."""
    out = list(ids)
    bad = next((t for t in out if not isinstance(t, int) or t < 0 or t >= vocab_size), None)
    if bad is not None:
        raise InvalidInputError(
            f"Input at index {index} holds token id {bad!r}, outside this model's vocabulary "
            f"(0..{vocab_size - 1}). Token-id inputs must use the served model's own tokenizer; "
            f"send text instead (e.g. langchain-openai with check_embedding_ctx_length=False).")
    if len(out) > max_tokens:
        if not truncate:
            raise TokenLimitExceededError(
                f"Input at index {index} has {len(out)} tokens, over the model's limit of {max_tokens}")
        out = out[:max_tokens]
    return out


def texts_of(inputs: Sequence[EmbedInput], model_id: str) -> list[str | None]:
    """Text per input (None for token-id inputs); images are refused by text-only models."""
    out: list[str | None] = []
    for i, item in enumerate(inputs):
        if item.image is not None:
            raise InvalidInputError(f"Input at index {i} is an image, but model {model_id!r} takes text only")
        out.append(item.text if item.token_ids is None else None)
    return out

"""Tokenisation shared by the text families: one pass, real token counts, `truncate` semantics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InvalidInputError, TokenLimitExceededError
from ..jobs import EmbedInput


def tokenize(tokenizer: Any, texts: Sequence[str], *, max_tokens: int, truncate: bool,
             add_special_tokens: bool = True, indices: Sequence[int] | None = None) -> list[list[int]]:
    """Token ids per text. Over-length texts are cut (truncate=True) or rejected with a 400."""
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=add_special_tokens, truncation=True,
                    max_length=max_tokens + 1, padding=False, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    over = [i for i, ids in enumerate(enc) if len(ids) > max_tokens]
    if over and not truncate:
        i = indices[over[0]] if indices is not None else over[0]
        raise TokenLimitExceededError(
            f"Input at index {i} is longer than the model's limit of {max_tokens} tokens; "
            f"send shorter text or set truncate=true")
    if over:
        cut = tokenizer([texts[i] for i in over], add_special_tokens=add_special_tokens, truncation=True,
                        max_length=max_tokens, padding=False, return_attention_mask=False,
                        return_token_type_ids=False)["input_ids"]
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

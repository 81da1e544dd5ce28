"""Pooling of token hidden states into one vector per sequence."""

from __future__ import annotations

import torch


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """First token; with left padding the first *real* token."""
    first = mask.long().argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Last real token, whatever the padding side."""
    n = mask.shape[1]
    # index of the last position where mask == 1
    positions = torch.arange(n, device=mask.device).unsqueeze(0).expand_as(mask)
    last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.clamp(min=0)]


def max_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    masked = hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min)
    return masked.max(dim=1).values


POOLERS = {"mean": mean_pool, "cls": cls_pool, "last": last_token_pool, "max": max_pool}


def pool(mode: str, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    try:
        return POOLERS[mode](hidden, mask)
    except KeyError:
        raise ValueError(f"unknown pooling mode {mode!r}; known: {sorted(POOLERS)}") from None

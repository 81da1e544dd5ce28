"""Licences in plain sight: which catalog licences forbid commercial use, and the notice to show for them.

The catalog's licence strings come from the model cards (docs/checkpoints.md "Licences"): CC-BY-NC-4.0
(non-commercial) for v3, v5, code-embeddings and the rerankers; the Qwen Research License for v4;
Apache-2.0 for v2 and all-MiniLM-L6-v2.
"""

from __future__ import annotations

import re

# CC "-NC" variants, "non-commercial" in any spelling, research-only licences (Qwen Research License)
_NON_COMMERCIAL = re.compile(r"(^|[^a-z])nc([^a-z]|$)|non[- ]?commercial|research", re.IGNORECASE)


def is_non_commercial(licence: str | None) -> bool:
    return bool(licence) and _NON_COMMERCIAL.search(licence) is not None  # type: ignore[arg-type]


def licence_notice(model_id: str, licence: str | None) -> str | None:
    """One line for a model whose licence does not allow commercial use (None otherwise)."""
    if not is_non_commercial(licence):
        return None
    return (f"{model_id} is licensed {licence}: non-commercial use only; see the model card for commercial "
            f"terms before serving it in a product")

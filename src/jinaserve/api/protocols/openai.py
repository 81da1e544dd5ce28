"""OpenAI embeddings protocol fields (`encoding_format`, `user`) and the OpenAI model list shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OpenAIEmbeddingFields(BaseModel):
    model_config = ConfigDict(extra="ignore")

    encoding_format: Literal["float", "base64", "binary", "ubinary"] | None = Field(
        default=None, description="OpenAI output format (float, base64; the OpenAI SDK sends 'base64' by "
        "default). Also a Jina alias of embedding_type, so binary and ubinary are accepted too.")
    user: str | None = Field(default=None, description="Accepted and ignored (OpenAI field).")


def model_card(model_id: str, *, kind: str, created: int, extra: dict) -> dict:
    """One entry of `GET /v1/models` in OpenAI's shape, with jinaserve's facts added."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "jinaserve", "kind": kind,
            **extra}

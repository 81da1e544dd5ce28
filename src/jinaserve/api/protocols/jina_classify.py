"""Jina classification request schemas: `POST /v1/classify` (zero-shot with `labels`, few-shot with
`classifier_id`) and `POST /v1/train`. JSON `null` means "absent"; unknown fields are ignored.

Field facts: the hosted OpenAPI (api.jina.ai/openapi.json, 2026-04), schemas
`*ZeroShotClassificationRequest`, `FewShotClassificationRequest`, `*CreateTrainingRequest`,
`UpdateTrainingRequest`, `TextTrainingItem`, `ImageTrainingItem` (see docs/classify.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...errors import FieldError, ValidationFailedError
from ...jobs import EmbedInput
from .jina import parse_inputs


class ClassifyRequest(BaseModel):
    """`POST /v1/classify`: `{model, input, labels}` or `{classifier_id, input}`."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, description="Embedding model for zero-shot classification "
                              "(null: the first served embedding model). Ignored with classifier_id.")
    input: Any = Field(default=None, description="str, {'text'}, {'image'} (models that take images), or a "
                       "list of up to 512 of them.")
    labels: Any = Field(default=None, description="Zero-shot: a list of up to 512 distinct labels, or a dict of "
                        "up to 8 named groups of up to 64 labels each (each group classified on its own).")
    classifier_id: str | None = Field(default=None, description="Few-shot: the id /v1/train returned.")

    def check_mode(self) -> None:
        if self.classifier_id is not None and self.labels is not None:
            raise ValidationFailedError([FieldError(
                "body -> labels", "Send labels (zero-shot) or classifier_id (a trained classifier), not both",
                "value_error")])
        if self.classifier_id is None and self.labels is None:
            raise ValidationFailedError([FieldError(
                "body -> labels", "Field required: send labels (zero-shot) or classifier_id (a classifier "
                "trained with /v1/train)", "missing")])


class TrainRequest(BaseModel):
    """`POST /v1/train`: `{model, input: [{text|image, label}], num_iters, access}` creates a classifier;
    `{classifier_id, input, num_iters}` keeps training one."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, description="Embedding model of a new classifier (null: the first "
                              "served embedding model). Ignored with classifier_id (the classifier keeps its model).")
    input: Any = Field(default=None, description="A {text|image, label} item or a list of up to 512 of them.")
    num_iters: int | None = Field(default=None, description="Optimiser iterations, 1..100 (default 10).")
    classifier_id: str | None = Field(default=None, description="Update this classifier instead of creating one.")
    access: Literal["public", "private"] | None = Field(
        default=None, description="public (default): any API key may classify with it by id; private: only the "
        "key that trained it. Only the creating key may update or delete it either way.")


def parse_train_items(raw: Any, *, max_items: int, max_chars: int) -> tuple[list[EmbedInput], list[str]]:
    """`input` of /v1/train: the items' contents (text or image) and their labels, 422 per bad item."""
    if raw is None:
        raise ValidationFailedError([FieldError("body -> input", "Field required", "missing")])
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise ValidationFailedError([FieldError("body -> input", "input must be a {text|image, label} object or a "
                                                "list of them", "type_error")])
    if not items:
        raise ValidationFailedError([FieldError("body -> input", "List should have at least 1 item", "too_short",
                                                [])])
    if len(items) > max_items:
        raise ValidationFailedError([FieldError("body -> input", f"List should have at most {max_items} items, got "
                                                f"{len(items)}", "too_long")])
    contents: list[dict[str, Any]] = []
    labels: list[str] = []
    for i, item in enumerate(items):
        field = f"body -> input -> {i}"
        if not isinstance(item, dict):
            raise ValidationFailedError([FieldError(field, "A training item must be an object {\"text\": str, "
                                                    "\"label\": str} or {\"image\": str, \"label\": str}",
                                                    "type_error")])
        label = item.get("label")
        if not isinstance(label, str):
            raise ValidationFailedError([FieldError(f"{field} -> label", "Field required: a string label" if label
                                                    is None else "label must be a string", "missing" if label is
                                                    None else "string_type")])
        content = {k: item[k] for k in ("text", "image") if item.get(k) is not None}
        if len(content) != 1:
            raise ValidationFailedError([FieldError(field, "A training item needs exactly one of 'text' or 'image'",
                                                    "value_error")])
        contents.append(content)
        labels.append(label)
    return parse_inputs(contents, max_inputs=max_items, max_chars=max_chars), labels

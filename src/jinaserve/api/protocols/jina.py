"""Jina Search Foundation API request schemas (embeddings, rerank, multi-vector), with the hosted
service's field aliases. JSON `null` means "absent"; unknown fields are ignored.

Only this module (and `openai.py`) knows field spellings; everything is translated into the plain
jobs of `jinaserve.jobs`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from ...errors import FieldError, ValidationFailedError
from ...jobs import EmbedInput, EmbedOptions, RerankDocument, RerankOptions
from .openai import OpenAIEmbeddingFields

EmbeddingTypeName = Literal["float", "base64", "binary", "ubinary"]


class EmbeddingsRequest(OpenAIEmbeddingFields):
    """`POST /v1/embeddings`: one schema for Jina and OpenAI clients."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str | None = Field(default=None, description="Served model id (null: the first embedding model).")
    input: Any = Field(
        default=None, validation_alias=AliasChoices("input", "content", "texts"),
        description="str, list of str, {'text'}, {'image'|'url'|'bytes'} objects, or data-URI strings. Token-id "
        "arrays only when the server allows them (allow_token_ids: ids of the served model's own tokenizer).")
    embedding_type: EmbeddingTypeName | list[EmbeddingTypeName] | None = Field(
        default=None, validation_alias=AliasChoices("embedding_type", "embedding_types"),
        description="Jina output format: float, base64, binary, ubinary. Wins over encoding_format.")
    encoding_type: EmbeddingTypeName | None = Field(default=None, description="Legacy Jina name (LlamaIndex).")
    task: str | None = Field(default=None, validation_alias=AliasChoices("task", "task_type"))
    dimensions: int | None = Field(
        default=None, validation_alias=AliasChoices("dimensions", "output_dimensionality", "output_dimension"))
    normalized: bool | None = None
    truncate: bool | None = Field(default=None, validation_alias=AliasChoices("truncate", "truncation"))
    late_chunking: bool | None = None
    return_multivector: bool | None = None
    return_tokenized_input: bool | None = Field(
        default=None, description="With return_multivector: each item also carries `tokenized_input`, the "
        "token string behind each of its vectors.")
    input_type: Literal["query", "document"] | None = Field(
        default=None, description="Legacy multi-vector / ColBERT field: query or document. For models with "
        "retrieval tasks and no `task` given, it picks retrieval.query or retrieval.passage.")

    @field_validator("embedding_type", mode="after")
    @classmethod
    def _single_type(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("only one embedding_type per request is supported")
            return value[0]
        return value

    def output_type(self) -> str:
        """Precedence: embedding_type > encoding_format > encoding_type > float."""
        return self.embedding_type or self.encoding_format or self.encoding_type or "float"  # type: ignore[return-value]

    def task_for(self, task_names: list[str]) -> str | None:
        """`task`, or the retrieval task that `input_type` names when the model has one."""
        if self.task is not None or self.input_type is None:
            return self.task
        wanted = "retrieval.query" if self.input_type == "query" else "retrieval.passage"
        return wanted if wanted in task_names else None

    def to_options(self, task_names: list[str] | None = None) -> EmbedOptions:
        return EmbedOptions(
            task=self.task_for(task_names) if task_names is not None else self.task,
            dimensions=self.dimensions,
            normalized=True if self.normalized is None else self.normalized,
            truncate=bool(self.truncate),
            late_chunking=bool(self.late_chunking),
            return_multivector=bool(self.return_multivector),
            return_tokenized_input=bool(self.return_tokenized_input),
            embedding_type=self.output_type(),
        )


TOKEN_IDS_REFUSED = (
    "is an array of token ids, but this server takes text, like the hosted Jina API: ids from another "
    "tokenizer would give wrong vectors. langchain-openai's OpenAIEmbeddings sends tiktoken ids by default: "
    "create it with check_embedding_ctx_length=False to send the text. (An operator can accept ids of the "
    "served model's own vocabulary with the allow_token_ids setting.)")


def parse_inputs(raw: Any, *, max_inputs: int, max_chars: int, allow_token_ids: bool = False) -> list[EmbedInput]:
    """The request's `input` as a list of EmbedInput; 422 with the offending index otherwise. Token-id
    arrays are refused (422 naming the client fix) unless `allow_token_ids`."""
    if raw is None:
        raise ValidationFailedError([FieldError("body -> input", "Field required", "missing")])
    if isinstance(raw, str | dict):
        items = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
        items = [raw]  # one token-id array
    elif isinstance(raw, list):
        items = raw
    else:
        raise ValidationFailedError([FieldError("body -> input", "Input should be a string, an object or a list",
                                                "type_error", _short(raw))])
    if not items:
        raise ValidationFailedError([FieldError("body -> input", "List should have at least 1 item",
                                                "too_short", [])])
    if len(items) > max_inputs:
        raise ValidationFailedError([FieldError(
            "body -> input", f"List should have at most {max_inputs} items, got {len(items)}", "too_long",
            None)])
    out: list[EmbedInput] = []
    for i, item in enumerate(items):
        parsed = _parse_one(item, i, max_chars)
        if parsed.token_ids is not None and not allow_token_ids:
            raise ValidationFailedError([FieldError(f"body -> input -> {i}", f"Input at index {i} {TOKEN_IDS_REFUSED}",
                                                    "token_ids_not_accepted", None)])
        out.append(parsed)
    return out


def _parse_one(item: Any, i: int, max_chars: int) -> EmbedInput:
    field = f"body -> input -> {i}"
    if isinstance(item, str):
        if item.startswith("data:image/"):  # size-checked as an image (image_max_bytes), not as text
            return EmbedInput(image=item)
        if len(item) > max_chars:
            raise ValidationFailedError([FieldError(field, f"String longer than {max_chars} characters",
                                                    "string_too_long", None)])
        return EmbedInput(text=item)
    if isinstance(item, list):
        if item and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            return EmbedInput(token_ids=item)
        raise ValidationFailedError([FieldError(field, "A list input must be an array of integer token ids",
                                                "type_error", _short(item))])
    if isinstance(item, dict):
        if isinstance(item.get("text"), str):
            text = item["text"]
            if len(text) > max_chars:
                raise ValidationFailedError([FieldError(field, f"String longer than {max_chars} characters",
                                                        "string_too_long", None)])
            return EmbedInput(text=text)
        for key in ("image", "url", "bytes"):
            if isinstance(item.get(key), str):
                return EmbedInput(image=item[key])
        if "pdf" in item:
            raise ValidationFailedError([FieldError(field, "PDF inputs are not supported", "value_error", None)])
        raise ValidationFailedError([FieldError(field, "Object inputs need a string 'text', 'image', 'url' or "
                                                "'bytes' field", "type_error", _short(item))])
    raise ValidationFailedError([FieldError(field, "Input should be a string, an object or a token-id array",
                                            "type_error", _short(item))])


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 200 else text[:200] + "..."


class RerankRequest(BaseModel):
    """`POST /v1/rerank`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str | None = None
    query: str | dict[str, Any]
    documents: list[str | dict[str, Any]] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1, validation_alias=AliasChoices("top_n", "top_k"))
    return_documents: bool | None = None
    return_embeddings: bool | None = None
    instruction: str | None = None
    max_doc_length: int | None = Field(default=None, ge=1, le=131072,
                                       validation_alias=AliasChoices("max_doc_length", "max_tokens_per_doc"))
    truncation: bool | None = Field(default=None, validation_alias=AliasChoices("truncation", "truncate"))

    def query_text(self) -> str:
        if isinstance(self.query, str):
            return self.query
        text = self.query.get("text")
        if isinstance(text, str):
            return text
        raise ValidationFailedError([FieldError("body -> query", "query must be a string or {'text': str}",
                                                "type_error", None)])

    def checked_documents(self, max_documents: int, max_chars: int) -> list[RerankDocument]:
        """`to_documents` after the per-request document limit (422 above it)."""
        if len(self.documents) > max_documents:
            raise ValidationFailedError([FieldError(
                "body -> documents", f"List should have at most {max_documents} items, got {len(self.documents)}",
                "too_long", None)])
        return self.to_documents(max_chars)

    def to_documents(self, max_chars: int) -> list[RerankDocument]:
        docs: list[RerankDocument] = []
        for i, d in enumerate(self.documents):
            field = f"body -> documents -> {i}"
            if isinstance(d, str):
                text = d
            elif isinstance(d.get("text"), str):
                text = d["text"]
            elif isinstance(d.get("image"), str):
                docs.append(RerankDocument(image=d["image"], original=d))
                continue
            else:
                raise ValidationFailedError([FieldError(field, "A document must be a string, {'text': str} or "
                                                        "{'image': str}", "type_error", _short(d))])
            if len(text) > max_chars:
                raise ValidationFailedError([FieldError(field, f"String longer than {max_chars} characters",
                                                        "string_too_long", None)])
            docs.append(RerankDocument(text=text, original=d))
        return docs

    def to_options(self) -> RerankOptions:
        return RerankOptions(
            top_n=self.top_n,
            return_documents=True if self.return_documents is None else self.return_documents,
            return_embeddings=bool(self.return_embeddings),
            instruction=self.instruction,
            max_doc_length=self.max_doc_length,
            truncate=True if self.truncation is None else self.truncation,
        )

"""One line of a server batch job → a background request on the right model → one output or error line.

Jina jobs and OpenAI batches share this path: a Jina line `{"custom_id", "body": {"input"}}` becomes an
embeddings request body (the job's options under the line's own fields); an OpenAI line
`{"custom_id", "method", "url", "body"}` carries its whole body. Each body goes through the same request
schemas, limits and response shapes as `/v1/embeddings` and `/v1/rerank`, so a line's output body equals
the response of the same request sent online.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..api.errors import exception_body, validation_errors
from ..api.protocols.batch import failed_line, output_line
from ..api.protocols.jina import EmbeddingsRequest, RerankRequest, parse_inputs
from ..api.responses import embeddings_body, rerank_body
from ..config import Settings
from ..engine.registry import ModelRegistry
from ..errors import FieldError, InvalidInputError, JinaServeError, ValidationFailedError
from ..jobs import RerankJob
from ..store.jobs import Job
from .inputs import load_line
from .runner import Unit, UnitResult


@dataclass
class LineFacts:
    """What a line says before anything runs (also used to validate uploaded files)."""

    custom_id: str
    body: dict[str, Any]


def read_line(job: Job, line_no: int, raw: bytes) -> LineFacts:
    """Parse one JSONL line of `job`'s input (already validated for OpenAI files; normalised for Jina)."""
    try:
        obj = load_line(raw)
    except ValueError:
        raise InvalidInputError(f"Line {line_no + 1} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise InvalidInputError(f"Line {line_no + 1} must be a JSON object")
    custom_id = obj.get("custom_id")
    custom_id = str(custom_id) if custom_id is not None else str(line_no)
    body = obj.get("body")
    if not isinstance(body, dict):
        raise InvalidInputError(f"Line {line_no + 1} needs an object 'body'")
    if job.api == "jina":
        body = {**job.params.get("defaults", {}), **body, "model": job.model}
    return LineFacts(custom_id, body)


def validated(schema: type, body: dict[str, Any]) -> Any:
    """`schema.model_validate(body)`, with pydantic's errors as the API's 422 (fields under `body -> `)."""
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        errs = validation_errors(exc)  # type: ignore[arg-type]
        raise ValidationFailedError([FieldError(f"body -> {e.field}", e.message, e.type, e.input)
                                     for e in errs]) from None


class LineRunner:
    """Turns the lines of one server job into runner `Unit`s."""

    def __init__(self, job: Job, registry: ModelRegistry, settings: Settings) -> None:
        self.job = job
        self.registry = registry
        self.settings = settings

    def unit(self, line_no: int, raw: bytes, next_offset: int) -> Unit:
        custom_id = str(line_no)
        try:
            facts = read_line(self.job, line_no, raw)
            custom_id = facts.custom_id
            start, render = self._prepare(facts.body)
        except JinaServeError as exc:
            return Unit(line_no + 1, next_offset, start=_raiser(exc), collect=self._collector(line_no, custom_id,
                                                                                                None))
        return Unit(line_no + 1, next_offset, start=start, collect=self._collector(line_no, custom_id, render))

    def _prepare(self, body: dict[str, Any]):
        s = self.settings
        if self.job.endpoint == "/v1/rerank":
            req = validated(RerankRequest, body)
            service = self.registry.get(req.model, "rerank")
            docs = req.checked_documents(s.max_documents_per_request, s.max_input_chars)
            rjob = RerankJob(service.id, req.query_text(), docs, req.to_options())

            def render_rerank(result: Any) -> tuple[dict[str, Any], int]:
                o = rjob.options
                return rerank_body(service.id, docs, result, top_n=o.top_n, return_documents=o.return_documents,
                                   return_embeddings=o.return_embeddings), result.total_tokens

            return (lambda: service.start_rerank(rjob)), render_rerank
        req = validated(EmbeddingsRequest, body)
        service = self.registry.get(req.model, "embedding")
        inputs = parse_inputs(req.input, max_inputs=s.max_inputs_per_request, max_chars=s.max_input_chars,
                              allow_token_ids=s.allow_token_ids)
        options = req.to_options(service.spec.task_names)
        if options.return_multivector and options.dimensions is not None:
            raise ValidationFailedError([FieldError("body -> dimensions", "dimensions cannot be combined with "
                                                    "return_multivector", "value_error", options.dimensions)])

        def render_embed(result: Any) -> tuple[dict[str, Any], int]:
            return embeddings_body(service.id, result, options.embedding_type), result.total_tokens

        return (lambda: service.start_embed(inputs, options)), render_embed

    def _collector(self, line_no: int, custom_id: str, render):
        job_id = self.job.id

        def collect(outcome: Any) -> UnitResult:
            if isinstance(outcome, JinaServeError):
                line = output_line(job_id, line_no, custom_id, outcome.status, exception_body(outcome))
                return UnitResult([("err", line)], failed=1)
            body, tokens = render(outcome)
            return UnitResult([("out", output_line(job_id, line_no, custom_id, 200, body))], completed=1,
                              tokens=tokens)

        return collect

    def not_run(self, line_no: int, raw: bytes, code: str, message: str) -> dict[str, Any]:
        """The error line of a line that will not run (the job expired first)."""
        try:
            custom_id = read_line(self.job, line_no, raw).custom_id
        except JinaServeError:
            custom_id = str(line_no)
        return failed_line(self.job.id, line_no, custom_id, code, message)


def _raiser(exc: JinaServeError):
    def start() -> Any:
        raise exc

    return start

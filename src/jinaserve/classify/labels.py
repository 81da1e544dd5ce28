"""Label sets of zero-shot classification and the label rules shared with training.

`labels` is a list of labels, or a dict of named groups of labels (each group is classified on its own).
Limits are the hosted API's (OpenAPI `ZeroShotClassificationRequest.labels`: "a list of up to 512 labels,
or a dict of up to 8 groups with max 64 labels each"); the per-label length cap is jinaserve's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import FieldError, LabelLimitError, ValidationFailedError

MAX_LABELS = 512
MAX_GROUPS = 8
MAX_GROUP_LABELS = 64
MAX_LABEL_CHARS = 4096
_MAX_REPORTED = 10  # field errors listed in one response (a million bad labels must not make a huge body)


@dataclass(frozen=True)
class LabelSet:
    """Labels as sent: one unnamed group for a list, or the dict's groups in their order."""

    groups: tuple[tuple[str | None, tuple[str, ...]], ...]

    @property
    def grouped(self) -> bool:
        return self.groups[0][0] is not None

    def unique(self) -> list[str]:
        """Every distinct label once, in first-seen order (a label may sit in several groups)."""
        return list(dict.fromkeys(label for _, labels in self.groups for label in labels))

    @classmethod
    def parse(cls, value: Any, field: str = "body -> labels") -> LabelSet:
        if isinstance(value, list | tuple):
            return cls(((None, _group(value, field, MAX_LABELS)),))
        if isinstance(value, dict):
            if not value:
                raise ValidationFailedError([FieldError(field, "labels needs at least one group", "too_short")])
            if len(value) > MAX_GROUPS:
                raise LabelLimitError([FieldError(
                    field, f"Label limit exceeded: {len(value)} label groups provided, at most {MAX_GROUPS} "
                    f"allowed; split the request", "too_long")])
            groups = []
            for name, labels in value.items():
                where = f"{field} -> {name}"
                if not isinstance(name, str) or not name.strip():
                    raise ValidationFailedError([FieldError(where, "Group names must be non-empty strings",
                                                            "value_error")])
                if not isinstance(labels, list | tuple):
                    raise ValidationFailedError([FieldError(where, "A label group must be a list of strings",
                                                            "list_type")])
                groups.append((name, _group(labels, where, MAX_GROUP_LABELS)))
            return cls(tuple(groups))
        raise ValidationFailedError([FieldError(field, "labels must be a list of strings or a dict of named "
                                                "lists of strings", "type_error")])


def _group(labels: list[Any] | tuple[Any, ...], field: str, limit: int) -> tuple[str, ...]:
    if not labels:
        raise ValidationFailedError([FieldError(field, "List should have at least 1 label", "too_short", [])])
    if len(labels) > limit:
        raise LabelLimitError([FieldError(
            field, f"Label limit exceeded: {len(labels)} labels provided, at most {limit} allowed", "too_long")])
    errors = list(label_errors(labels, field))
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            continue
        first = seen.setdefault(label, i)
        if first != i and len(errors) < _MAX_REPORTED:
            errors.append(FieldError(f"{field} -> {i}", f"Duplicate label {_short(label)!r} (also at index "
                                     f"{first}); labels must be distinct", "value_error"))
    if errors:
        raise ValidationFailedError(errors)
    return tuple(labels)


def label_errors(labels: Iterable[Any], field: str) -> Iterable[FieldError]:
    """Per-label problems (type, empty, too long, invalid Unicode), at most `_MAX_REPORTED` of them."""
    count = 0
    for i, label in enumerate(labels):
        problem = label_problem(label)
        if problem:
            yield FieldError(f"{field} -> {i}", problem, "value_error")
            count += 1
            if count >= _MAX_REPORTED:
                return


def label_problem(label: Any) -> str | None:
    if not isinstance(label, str):
        return "A label must be a string"
    if not label.strip():
        return "A label must not be empty"
    if len(label) > MAX_LABEL_CHARS:
        return f"A label may have at most {MAX_LABEL_CHARS} characters, got {len(label)}"
    if not label.isascii():
        try:
            label.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"Label is not valid Unicode: unpaired surrogate at character {exc.start}"
    return None


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:60] + "..."

"""Labels written after encoding (by an LLM or by the user), kept in the store with where they came from.

Each label is one small JSON file in ``labels/``, named by the SHA-256 of its bytes: adding one never rewrites
another file or the manifest, so labels arrive one by one as they are paid for, a kill loses none that was
written, and reading checks every file against its name.

One schema, :class:`LabelRecord`, checks a record when it is written and when it is read, so a store never holds
a label it cannot read back: a record the writer would refuse is exactly one the reader skips. A file that is
not a valid record (altered, truncated, crafted, or naming a feature the store's SAE lacks) is skipped with a
warning naming it; the other labels stay readable. The newest record of a feature is its label.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..files import TEMPORARY_PREFIX, canonical_json, write_atomically
from .errors import StoreCorruptError, StoreError
from .paths import plain_file, plain_folder

logger = logging.getLogger(__name__)

SOURCES = ("llm", "user")
MAX_RECORD_BYTES = 1 << 20
"""A record's JSON is at most this long: labels are short phrases, and a store's labels are read whole."""
MAX_INTEGER = 2**63 - 1
"""Feature ids, seeds, rows and token counts fit a 64-bit integer column."""
RECORD_NAME = re.compile(r"[0-9a-f]{64}\.json")
EXAMPLE_ROLES = ("label_positives", "label_negatives", "score_positives", "score_negatives")
SCORE_FRACTIONS = ("balanced_accuracy", "precision", "recall", "f1", "fuzzing")
SCORE_COUNTS = ("true_positives", "false_positives", "true_negatives", "false_negatives")
USAGE_COUNTS = ("prompt_tokens", "completion_tokens")


class InvalidLabelRecord(ValueError):
    """A label record a store cannot keep; the message names the field and what is wrong (never its text)."""


@dataclass(frozen=True)
class LabelRecord:
    """One label of one feature and its provenance; refused on creation (:class:`InvalidLabelRecord`) unless a
    store can keep it and read it back."""

    feature: int
    """The feature id."""
    label: str
    """A short phrase."""
    source: str
    """``llm`` (written by a language model) or ``user`` (``ds.set_label``)."""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="microseconds"))
    """When it was written (ISO 8601, UTC); the newest record of a feature wins."""
    brief_description: str = ""
    """One sentence."""
    detailed_explanation: str = ""
    """A few sentences."""
    model: str | None = None
    """The LLM that wrote it (None for the user)."""
    prompt_version: str | None = None
    """Which prompts it was written and scored with."""
    seed: int | None = None
    """The seed that drew its examples."""
    examples: dict[str, list[int]] = field(default_factory=dict)
    """Rows of the store shown to write it and held out to score it, by role (:data:`EXAMPLE_ROLES`)."""
    score: dict[str, float] | None = None
    """Detection and fuzzing metrics on held-out examples, when scoring ran: fractions in [0, 1]
    (:data:`SCORE_FRACTIONS`) and counts (:data:`SCORE_COUNTS`)."""
    usage: dict[str, int] = field(default_factory=dict)
    """Prompt and completion tokens spent on it (:data:`USAGE_COUNTS`)."""

    def __post_init__(self):
        for name in ("label", "source", "created", "brief_description", "detailed_explanation", "model",
                     "prompt_version"):
            _check_text(getattr(self, name), name, optional=name in ("model", "prompt_version"))
        if not self.label.strip():
            raise InvalidLabelRecord("label is empty; a label is a short phrase")
        if self.source not in SOURCES:
            raise InvalidLabelRecord(f"source must be one of {SOURCES}")
        try:
            datetime.fromisoformat(self.created)
        except ValueError:
            raise InvalidLabelRecord("created is not an ISO 8601 time") from None
        _check_count(self.feature, "feature")
        if self.seed is not None:
            _check_count(self.seed, "seed")
        _check_table(self.examples, "examples", EXAMPLE_ROLES)
        for role, rows in self.examples.items():
            if not isinstance(rows, list):
                raise InvalidLabelRecord(f"examples.{role} is not a list of rows")
            for row in rows:
                _check_count(row, f"examples.{role}")
        if self.score is not None:
            _check_table(self.score, "score", SCORE_FRACTIONS + SCORE_COUNTS)
            for name, value in self.score.items():
                if name in SCORE_COUNTS:
                    _check_count(value, f"score.{name}")
                elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                    raise InvalidLabelRecord(f"score.{name} is not a number from 0 to 1")
        _check_table(self.usage, "usage", USAGE_COUNTS)
        for name, value in self.usage.items():
            _check_count(value, f"usage.{name}")
        size = len(self.to_bytes())
        if size > MAX_RECORD_BYTES:
            longest = max(("label", "brief_description", "detailed_explanation"), key=lambda n: len(getattr(self, n)))
            raise InvalidLabelRecord(f"the record would be {size:,} bytes of JSON, more than the {MAX_RECORD_BYTES:,} "
                                     f"a label record may have ({longest} is {len(getattr(self, longest)):,} "
                                     "characters); shorten it")

    def to_bytes(self) -> bytes:
        return canonical_json(asdict(self)).encode("utf-8")

    @classmethod
    def from_json(cls, body) -> "LabelRecord":
        """A record from parsed JSON, checked as when it is written (:class:`InvalidLabelRecord` otherwise)."""
        if not isinstance(body, dict) or set(body) != set(cls.__dataclass_fields__):
            raise InvalidLabelRecord("unexpected fields")
        return cls(**body)

    def check_feature(self, d_sae: int) -> None:
        """Refuse a record of a feature the store's SAE does not have."""
        if self.feature >= d_sae:
            raise InvalidLabelRecord(f"feature {self.feature} is outside [0, {d_sae}) for this SAE")


def _check_text(value, name: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidLabelRecord(f"{name} is not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate: no file, table or terminal can hold it
        raise InvalidLabelRecord(f"{name} is not valid Unicode text (a lone surrogate at character {err.start})") \
            from None


def _check_count(value, name: str) -> None:
    if type(value) is not int or not 0 <= value <= MAX_INTEGER:
        raise InvalidLabelRecord(f"{name} is not an integer from 0 to 2**63 - 1")


def _check_table(value, name: str, keys: tuple[str, ...]) -> None:
    if not isinstance(value, dict):
        raise InvalidLabelRecord(f"{name} is not a table")
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise InvalidLabelRecord(f"{name} has {len(unknown)} unknown entr{'y' if len(unknown) == 1 else 'ies'}; "
                                 f"the known ones are {keys}")


def record_name(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() + ".json"


def write_record(folder: Path, record: LabelRecord, d_sae: int) -> None:
    """Add ``record`` to ``folder`` atomically (the caller holds the writer lock); a record of a feature beyond
    ``d_sae`` is refused."""
    record.check_feature(d_sae)
    data = record.to_bytes()
    folder.mkdir(exist_ok=True)
    write_atomically(plain_folder(folder) / record_name(data), data)


def read_records(folder: Path, d_sae: int) -> list[LabelRecord]:
    """Every valid record in ``folder``, oldest first. Files being written (temporary names) are skipped
    silently, files that are not a valid record of a feature below ``d_sae`` with a warning naming them."""
    if not os.path.lexists(folder):
        return []
    records = []
    for entry in sorted(os.scandir(plain_folder(folder)), key=lambda e: e.name):
        if entry.name.startswith(TEMPORARY_PREFIX):
            continue
        try:
            records.append(_read_record(Path(entry.path), d_sae))
        except (StoreError, OSError) as err:  # OSError: a file that cannot be read (permissions)
            logger.warning("%s; skipped (the store's other labels are read)", err)
    return sorted(records, key=lambda r: r.created)


def _read_record(path: Path, d_sae: int) -> LabelRecord:
    """The record in ``path``; a StoreCorruptError naming it if that is not a valid record."""
    plain_file(path)
    if not RECORD_NAME.fullmatch(path.name):
        raise StoreCorruptError(f"{path}: not a label record's name (the SHA-256 of its bytes, then .json)")
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise StoreCorruptError(f"{path} is larger than a label record can be ({MAX_RECORD_BYTES:,} bytes)")
    data = path.read_bytes()
    if record_name(data) != path.name:
        raise StoreCorruptError(f"{path} does not match its checksum (its name); truncated or altered")
    try:
        body = json.loads(data.decode("utf-8"), parse_int=_json_integer)
        record = LabelRecord.from_json(body)
        record.check_feature(d_sae)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise StoreCorruptError(f"{path}: not JSON ({type(err).__name__})") from None
    except InvalidLabelRecord as err:
        raise StoreCorruptError(f"{path}: not a label record: {err}") from None
    return record


def _json_integer(digits: str) -> int:
    """An integer of a record's JSON; one of more digits than Python converts (4,300) is refused by name."""
    try:
        return int(digits)
    except ValueError:
        raise InvalidLabelRecord(f"an integer of {len(digits):,} digits; a record's integers fit 64 bits") from None


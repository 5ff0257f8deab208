"""Labels written after encoding (by an LLM, by the user, or from the dataset's own words), kept in the store with
where they came from.

Each label is one small JSON file in ``labels/``, named by the SHA-256 of its bytes: adding one never rewrites
another file or the manifest, so labels arrive one by one as they are paid for, a kill loses none that was
written, and reading checks every file against its name. Labels written from the dataset's words come many to a
file (:class:`DatasetLabels`): labelling every feature of an SAE writes a few files, not thousands.

One schema checks a label when it is written and when it is read — :class:`LabelRecord`, of which every label of
a :class:`DatasetLabels` file is one — so a store never holds a label it cannot read back: what the writer would
refuse is exactly what the reader skips. A file that is not valid (altered, truncated, crafted, or naming a
feature the store's SAE lacks) is skipped with a warning naming it; the other labels stay readable. The newest
record of a feature is its label.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from ..files import TEMPORARY_PREFIX, canonical_json, write_atomically
from .errors import StoreCorruptError, StoreError
from .paths import plain_file, plain_folder

logger = logging.getLogger(__name__)

SOURCES = ("llm", "user", "dataset")
MAX_RECORD_BYTES = 1 << 20
"""A label file's JSON is at most this long: labels are short phrases, and a store's labels are read whole."""
MAX_INTEGER = 2**63 - 1
"""Feature ids, seeds, rows and token counts fit a 64-bit integer column."""
RECORD_NAME = re.compile(r"[0-9a-f]{64}\.json")
EXAMPLE_ROLES = ("label_positives", "label_negatives", "score_positives", "score_negatives")
_KEYWORD = ("keyword_balanced_accuracy", "keyword_precision", "keyword_recall")  # dataset labels' keyword detection
SCORE_FRACTIONS = ("balanced_accuracy", "precision", "recall", "f1", "fuzzing", *_KEYWORD)
SCORE_COUNTS = tuple(f"{prefix}{outcome}_{kind}" for prefix in ("", "keyword_") for outcome in ("true", "false")
                     for kind in ("positives", "negatives"))
USAGE_COUNTS = ("prompt_tokens", "completion_tokens")
_TEXTS = ("label", "source", "created", "brief_description", "detailed_explanation")
_OPTIONAL_TEXTS = ("model", "prompt_version")
_KNOWN = {"examples": frozenset(EXAMPLE_ROLES), "score": frozenset(SCORE_FRACTIONS + SCORE_COUNTS),
          "usage": frozenset(USAGE_COUNTS)}
_COUNTS = frozenset(SCORE_COUNTS)


class InvalidLabelRecord(ValueError):
    """A label a store cannot keep; the message names the field and what is wrong (never its text)."""


@dataclass(frozen=True)
class LabelRecord:
    """One label of one feature and its provenance; refused on creation (:class:`InvalidLabelRecord`) unless a
    store can keep it and read it back."""

    feature: int
    """The feature id."""
    label: str
    """A short phrase."""
    source: str
    """``llm`` (written by a language model), ``user`` (``ds.set_label``) or ``dataset`` (the words it fires on in
    the dataset, ``ds.label_features_offline``)."""
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
    """Its score on held-out examples, when scoring ran: fractions in [0, 1] (:data:`SCORE_FRACTIONS`) and counts
    (:data:`SCORE_COUNTS`); ``keyword_*`` for a dataset label's keyword detection."""
    usage: dict[str, int] = field(default_factory=dict)
    """Prompt and completion tokens spent on it (:data:`USAGE_COUNTS`)."""

    def __post_init__(self):  # every check is cheap when it passes: a store may hold tens of thousands of labels
        for name in _TEXTS:
            _check_text(getattr(self, name), name)
        for name in _OPTIONAL_TEXTS:
            if getattr(self, name) is not None:
                _check_text(getattr(self, name), name)
        if not self.label.strip():
            raise InvalidLabelRecord("label is empty; a label is a short phrase")
        if self.source not in SOURCES:
            raise InvalidLabelRecord(f"source must be one of {SOURCES}")
        _check_time(self.created)
        _check_count(self.feature, "feature")
        if self.seed is not None:
            _check_count(self.seed, "seed")
        _check_table(self.examples, "examples")
        for role, rows in self.examples.items():
            if not isinstance(rows, list):
                raise InvalidLabelRecord(f"examples.{role} is not a list of rows")
            for row in rows:
                _check_count(row, "examples.", role)
        if self.score is not None:
            _check_table(self.score, "score")
            for name, value in self.score.items():
                _check_number(value, name, name in _COUNTS)
        _check_table(self.usage, "usage")
        for name, value in self.usage.items():
            _check_count(value, "usage.", name)
        if self._size_bound() > MAX_RECORD_BYTES and len(self.to_bytes()) > MAX_RECORD_BYTES:
            size = len(self.to_bytes())
            longest = max(("label", "brief_description", "detailed_explanation"), key=lambda n: len(getattr(self, n)))
            raise InvalidLabelRecord(f"the record would be {size:,} bytes of JSON, more than the {MAX_RECORD_BYTES:,} "
                                     f"a label record may have ({longest} is {len(getattr(self, longest)):,} "
                                     "characters); shorten it")

    def to_bytes(self) -> bytes:
        return canonical_json(asdict(self)).encode("utf-8")

    def _size_bound(self) -> int:
        """At least the length of :meth:`to_bytes`, without writing it: a character takes at most 6 bytes of
        JSON (``\\u001b``), a number 25, a key or punctuation 32 (reading thousands of labels stays fast)."""
        texts = (self.label, self.source, self.created, self.brief_description, self.detailed_explanation,
                 self.model or "", self.prompt_version or "")
        numbers = 2 + sum(map(len, self.examples.values())) + len(self.score or {}) + len(self.usage)
        keys = len(self.__dataclass_fields__) + len(self.examples) + len(self.score or {}) + len(self.usage)
        return 6 * sum(map(len, texts)) + 25 * numbers + 32 * keys

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


@dataclass(frozen=True)
class DatasetLabels:
    """Labels of many features written in one run from the dataset's own documents, and their scores; refused
    on creation (:class:`InvalidLabelRecord`) unless every label is a valid :class:`LabelRecord` and the file fits
    :data:`MAX_RECORD_BYTES`."""

    labels: dict[int, str]
    """Feature id → label."""
    scores: dict[int, dict[str, float]]
    """Feature id → its score on the documents held out from writing the labels (keyword detection)."""
    rows: str
    """SHA-256 of the store rows the labels were written from and scored on (which run wrote them)."""
    seed: int
    """The seed that split those rows into the ones labels are written from and the held-out ones."""
    held_out: float
    """The share of the rows held out to score the labels."""
    version: str
    """How the labels were written (the method's version)."""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="microseconds"))
    """When they were written (ISO 8601, UTC)."""

    def __post_init__(self):
        for name in ("rows", "version", "created"):
            _check_text(getattr(self, name), name)
        _check_count(self.seed, "seed")
        if isinstance(self.held_out, bool) or not isinstance(self.held_out, (int, float)) or \
                not 0 <= self.held_out < 1:
            raise InvalidLabelRecord("held_out is not a share in [0, 1)")
        for name in ("labels", "scores"):
            if not isinstance(getattr(self, name), dict):
                raise InvalidLabelRecord(f"{name} is not a table")
        for f in self.labels:
            _check_count(f, "a feature id of labels")
        if not set(self.scores) <= set(self.labels):
            raise InvalidLabelRecord("scores name a feature that has no label")
        # Each label is checked as a label record, once: the records are kept (a frozen dataclass's own cache).
        object.__setattr__(self, "_records", tuple(
            LabelRecord(feature=f, label=label, source="dataset", created=self.created, prompt_version=self.version,
                        seed=self.seed, score=self.scores.get(f)) for f, label in sorted(self.labels.items())))
        if self._size_bound() > MAX_RECORD_BYTES and len(self.to_bytes()) > MAX_RECORD_BYTES:
            raise InvalidLabelRecord(f"{len(self.labels)} labels take {len(self.to_bytes()):,} bytes of JSON, more "
                                     f"than the {MAX_RECORD_BYTES:,} a label file may have; write fewer at a time")

    def _size_bound(self) -> int:
        """At least the length of :meth:`to_bytes` (as :meth:`LabelRecord._size_bound` bounds a record's)."""
        numbers = 2 + len(self.labels) + sum(map(len, self.scores.values()))
        texts = sum(map(len, self.labels.values())) + len(self.rows) + len(self.version) + len(self.created)
        return 6 * texts + 25 * numbers + 32 * (numbers + len(self.__dataclass_fields__))

    def records(self) -> list[LabelRecord]:
        """One :class:`LabelRecord` per label (source ``dataset``), in the order of their features."""
        return list(self._records)

    def to_bytes(self) -> bytes:
        body = {f.name: getattr(self, f.name) for f in fields(self)}  # not asdict: it deep-copies every score
        body["labels"] = {str(f): label for f, label in self.labels.items()}
        body["scores"] = {str(f): score for f, score in self.scores.items()}
        return canonical_json({"dataset_labels": body}).encode("utf-8")

    @classmethod
    def from_json(cls, body) -> "DatasetLabels":
        """A file of dataset labels from parsed JSON (its ``dataset_labels`` object), checked as when it is
        written (:class:`InvalidLabelRecord` otherwise)."""
        if not isinstance(body, dict) or set(body) != set(cls.__dataclass_fields__):
            raise InvalidLabelRecord("unexpected fields")
        if not isinstance(body["labels"], dict) or not isinstance(body["scores"], dict):
            raise InvalidLabelRecord("labels or scores are not tables")
        return cls(**{**body, "labels": {_feature_key(k): v for k, v in body["labels"].items()},
                      "scores": {_feature_key(k): v for k, v in body["scores"].items()}})

    def check_feature(self, d_sae: int) -> None:
        """Refuse labels of a feature the store's SAE does not have."""
        if self._records:
            self._records[-1].check_feature(d_sae)  # the largest feature id


def _check_text(value, name: str) -> None:
    if not isinstance(value, str):
        raise InvalidLabelRecord(f"{name} is not a string")
    if value.isascii():  # known without a look at the characters
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate: no file, table or terminal can hold it
        raise InvalidLabelRecord(f"{name} is not valid Unicode text (a lone surrogate at character {err.start})") \
            from None


def _check_time(value: str) -> None:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise InvalidLabelRecord("created is not an ISO 8601 time") from None


def _check_count(value, name: str, key: str = "") -> None:
    """An integer from 0 to :data:`MAX_INTEGER`; the field is ``name + key``."""
    if type(value) is not int or not 0 <= value <= MAX_INTEGER:
        raise InvalidLabelRecord(f"{name}{key} is not an integer from 0 to 2**63 - 1")


def _check_number(value, name: str, integral: bool) -> None:
    """``score[name]``: a fraction in [0, 1], or (``integral``) a count, which JSON may spell ``3.0``."""
    high = MAX_INTEGER if integral else 1
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high or (
            integral and value != int(value)):
        wanted = "whole number from 0 to 2**63 - 1" if integral else "number from 0 to 1"
        raise InvalidLabelRecord(f"score.{name} is not a {wanted}")


def _check_table(value, name: str) -> None:
    """A dict whose keys are the known ones of the field ``name`` (:data:`_KNOWN`)."""
    if not isinstance(value, dict):
        raise InvalidLabelRecord(f"{name} is not a table")
    if not value.keys() <= _KNOWN[name]:
        unknown = len(value.keys() - _KNOWN[name])
        raise InvalidLabelRecord(f"{name} has {unknown} unknown entr{'y' if unknown == 1 else 'ies'}; the known ones "
                                 f"are {sorted(_KNOWN[name])}")


def _feature_key(key: str) -> int:
    """A feature id as a JSON object key spells it: its decimal digits, as the writer writes them."""
    if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 19 and key == str(int(key))):
        raise InvalidLabelRecord("a feature id of labels or scores is not written as a number")
    return int(key)


def record_name(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() + ".json"


def write_record(folder: Path, record: LabelRecord, d_sae: int) -> None:
    """Add ``record`` to ``folder`` atomically (the caller holds the writer lock); a record of a feature beyond
    ``d_sae`` is refused."""
    _write(folder, record, d_sae)


def write_dataset_labels(folder: Path, labels: DatasetLabels, d_sae: int) -> None:
    """Add a file of dataset labels to ``folder`` atomically (the caller holds the writer lock); labels of a feature
    beyond ``d_sae`` are refused."""
    _write(folder, labels, d_sae)


def _write(folder: Path, item: LabelRecord | DatasetLabels, d_sae: int) -> None:
    item.check_feature(d_sae)
    data = item.to_bytes()
    if len(data) > MAX_RECORD_BYTES:  # what the reader checks first (the schema's bound makes this unreachable)
        raise InvalidLabelRecord(f"a label file would be {len(data):,} bytes, more than {MAX_RECORD_BYTES:,}")
    folder.mkdir(exist_ok=True)
    write_atomically(plain_folder(folder) / record_name(data), data)


def read_labels(folder: Path, d_sae: int) -> tuple[list[LabelRecord], list[DatasetLabels]]:
    """``(records, dataset_labels)``: every valid record in ``folder`` oldest first (the labels of dataset label
    files one record each), and those files themselves. Files being written (temporary names) are skipped
    silently, files that are not valid labels of features below ``d_sae`` with a warning naming them."""
    if not os.path.lexists(folder):
        return [], []
    records, sets = [], []
    for entry in sorted(os.scandir(plain_folder(folder)), key=lambda e: e.name):
        if entry.name.startswith(TEMPORARY_PREFIX):
            continue
        try:
            item = _read_file(Path(entry.path), d_sae)
        except (StoreError, OSError) as err:  # OSError: a file that cannot be read (permissions)
            logger.warning("%s; skipped (the store's other labels are read)", err)
            continue
        if isinstance(item, DatasetLabels):
            sets.append(item)
            records += item.records()
        else:
            records.append(item)
    return sorted(records, key=lambda r: r.created), sorted(sets, key=lambda s: s.created)


def _read_file(path: Path, d_sae: int) -> LabelRecord | DatasetLabels:
    """The record or dataset labels in ``path``; a StoreCorruptError naming it if that is not valid."""
    plain_file(path)
    if not RECORD_NAME.fullmatch(path.name):
        raise StoreCorruptError(f"{path}: not a label file's name (the SHA-256 of its bytes, then .json)")
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise StoreCorruptError(f"{path} is larger than a label file can be ({MAX_RECORD_BYTES:,} bytes)")
    data = path.read_bytes()
    if record_name(data) != path.name:
        raise StoreCorruptError(f"{path} does not match its checksum (its name); truncated or altered")
    try:
        body = json.loads(data.decode("utf-8"), parse_int=_json_integer)
        if isinstance(body, dict) and set(body) == {"dataset_labels"}:
            item = DatasetLabels.from_json(body["dataset_labels"])
        else:
            item = LabelRecord.from_json(body)
        item.check_feature(d_sae)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise StoreCorruptError(f"{path}: not JSON ({type(err).__name__})") from None
    except InvalidLabelRecord as err:
        raise StoreCorruptError(f"{path}: not a label file: {err}") from None
    return item


def _json_integer(digits: str) -> int:
    """An integer of a label file's JSON; one of more digits than Python converts (4,300) is refused by name."""
    try:
        return int(digits)
    except ValueError:
        raise InvalidLabelRecord(f"an integer of {len(digits):,} digits; a label file's integers fit 64 bits") \
            from None

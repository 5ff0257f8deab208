"""Labels written after encoding (by an LLM, by the user, or from the dataset's own words), kept in the store with
where they came from.

Each label is one small JSON file in ``labels/``, named by the SHA-256 of its bytes: adding one never rewrites
another file or the manifest, so labels arrive one by one as they are paid for, a kill loses none that was
written, and reading checks every file against its name. Labels written from the dataset's words come many to a
file (:class:`DatasetLabels`): labelling every feature of an SAE writes a few files, not thousands. A file is parsed
as data with a type check on every field; anything else is refused by name. The newest record of a feature is its
label.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..files import TEMPORARY_PREFIX, canonical_json, write_atomically
from .errors import StoreCorruptError
from .paths import plain_file, plain_folder

SOURCES = ("llm", "user", "dataset")
MAX_RECORD_BYTES = 1 << 20
RECORD_NAME_LENGTH = 64 + len(".json")


@dataclass(frozen=True)
class LabelRecord:
    """One label of one feature and its provenance."""

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
    """Rows of the store shown to write it and held out to score it, by role."""
    score: dict[str, float] | None = None
    """Detection and fuzzing metrics on held-out examples, when scoring ran."""
    usage: dict[str, int] = field(default_factory=dict)
    """Prompt and completion tokens spent on it."""

    def to_bytes(self) -> bytes:
        return canonical_json(asdict(self)).encode("utf-8")

    @classmethod
    def from_json(cls, body, where: str) -> "LabelRecord":
        """Parse a record, checking the type of every value; a StoreCorruptError naming ``where`` otherwise."""
        def bad(what: str) -> StoreCorruptError:
            return StoreCorruptError(f"{where}: {what}; not a label record")

        if not isinstance(body, dict) or set(body) != {f for f in cls.__dataclass_fields__}:
            raise bad("unexpected fields")
        text = {"label", "source", "created", "brief_description", "detailed_explanation"}
        for name in text:
            if not isinstance(body[name], str):
                raise bad(f"{name} is not a string")
        for name in ("model", "prompt_version"):
            if body[name] is not None and not isinstance(body[name], str):
                raise bad(f"{name} is not a string")
        for name in ("feature", "seed"):
            if (body[name] is not None or name == "feature") and (type(body[name]) is not int or body[name] < 0):
                raise bad(f"{name} is not a non-negative integer")
        if body["source"] not in SOURCES:
            raise bad(f"source {body['source']!r} is not one of {SOURCES}")
        examples, score, usage = body["examples"], body["score"], body["usage"]
        if not isinstance(examples, dict) or not all(
                isinstance(v, list) and all(type(r) is int and r >= 0 for r in v) for v in examples.values()):
            raise bad("examples are not lists of rows")
        if score is not None and not (isinstance(score, dict) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in score.values())):
            raise bad("score is not a table of numbers")
        if not isinstance(usage, dict) or not all(type(v) is int and v >= 0 for v in usage.values()):
            raise bad("usage is not a table of token counts")
        return cls(**body)


@dataclass(frozen=True)
class DatasetLabels:
    """Labels of many features written in one run from the dataset's own documents, and their scores."""

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

    def records(self) -> list[LabelRecord]:
        """One :class:`LabelRecord` per label (source ``dataset``)."""
        return [LabelRecord(feature=f, label=label, source="dataset", created=self.created,
                            prompt_version=self.version, seed=self.seed, score=self.scores.get(f))
                for f, label in sorted(self.labels.items())]

    def to_bytes(self) -> bytes:
        body = asdict(self)
        body["labels"] = {str(f): label for f, label in self.labels.items()}
        body["scores"] = {str(f): score for f, score in self.scores.items()}
        return canonical_json({"dataset_labels": body}).encode("utf-8")

    @classmethod
    def from_json(cls, body, where: str) -> "DatasetLabels":
        """Parse a file of dataset labels, checking the type of every value; a StoreCorruptError naming ``where``
        otherwise."""
        def bad(what: str) -> StoreCorruptError:
            return StoreCorruptError(f"{where}: {what}; not a file of dataset labels")

        if not isinstance(body, dict) or set(body) != set(cls.__dataclass_fields__):
            raise bad("unexpected fields")
        for name in ("rows", "version", "created"):
            if not isinstance(body[name], str):
                raise bad(f"{name} is not a string")
        if type(body["seed"]) is not int or body["seed"] < 0:
            raise bad("seed is not a non-negative integer")
        if not isinstance(body["held_out"], (int, float)) or isinstance(body["held_out"], bool) or not (
                0 <= body["held_out"] < 1):
            raise bad("held_out is not a share in [0, 1)")
        labels, scores = body["labels"], body["scores"]
        if not isinstance(labels, dict) or not all(
                k.isdigit() and isinstance(v, str) and v for k, v in labels.items()):
            raise bad("labels are not a table of feature ids to labels")
        if not isinstance(scores, dict) or not all(
                k in labels and isinstance(v, dict) and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in v.values())
                for k, v in scores.items()):
            raise bad("scores are not tables of numbers for labelled features")
        return cls(**{**body, "labels": {int(k): v for k, v in labels.items()},
                      "scores": {int(k): v for k, v in scores.items()}})


def record_name(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() + ".json"


def write_record(folder: Path, record: LabelRecord) -> None:
    """Add ``record`` to ``folder`` atomically (the caller holds the writer lock)."""
    data = record.to_bytes()
    folder.mkdir(exist_ok=True)
    write_atomically(plain_folder(folder) / record_name(data), data)


def write_dataset_labels(folder: Path, labels: DatasetLabels) -> None:
    """Add a file of dataset labels to ``folder`` atomically (the caller holds the writer lock)."""
    data = labels.to_bytes()
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"{len(labels.labels)} labels take {len(data)} bytes, more than a label file can hold "
                         f"({MAX_RECORD_BYTES}); write fewer at a time")
    folder.mkdir(exist_ok=True)
    write_atomically(plain_folder(folder) / record_name(data), data)


def read_records(folder: Path) -> list[LabelRecord]:
    """Every record in ``folder``, oldest first (dataset labels one record each); files being written (temporary
    names) are skipped."""
    return read_labels(folder)[0]


def read_labels(folder: Path) -> tuple[list[LabelRecord], list[DatasetLabels]]:
    """``(records, dataset_labels)``: every record in ``folder`` oldest first, the files of dataset labels one
    record per label among them, and those files themselves."""
    if not os.path.lexists(folder):
        return [], []
    records, sets = [], []
    for entry in sorted(os.scandir(plain_folder(folder)), key=lambda e: e.name):
        if entry.name.startswith(TEMPORARY_PREFIX):
            continue
        path = plain_file(Path(entry.path))
        if len(entry.name) != RECORD_NAME_LENGTH or not entry.name.endswith(".json"):
            raise StoreCorruptError(f"{path}: not a label record's name (the SHA-256 of its bytes, then .json)")
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise StoreCorruptError(f"{path} is larger than a label record can be ({MAX_RECORD_BYTES} bytes)")
        data = path.read_bytes()
        if record_name(data) != entry.name:
            raise StoreCorruptError(f"{path} does not match its checksum (its name); truncated or altered")
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise StoreCorruptError(f"{path}: not JSON ({type(err).__name__})") from err
        if isinstance(body, dict) and set(body) == {"dataset_labels"}:
            sets.append(DatasetLabels.from_json(body["dataset_labels"], str(path)))
            records += sets[-1].records()
        else:
            records.append(LabelRecord.from_json(body, str(path)))
    return sorted(records, key=lambda r: r.created), sorted(sets, key=lambda s: s.created)

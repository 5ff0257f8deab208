"""Encoding a table into a store: the input checked, the store created, the models run, a run resumed.

Everything that needs the reader and the SAE happens here; a ``Dataset`` only views what was stored.
Wherever an SAE meets a store — resuming, encoding an example text — the SAE must be the one the store
records (same reader, layer, role and SAE weights), or it is refused. Models an operation loads are
freed when it ends; models the caller loaded stay loaded.

Importing this module does not import torch: only running the models does.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..saes import DefaultSAE, sae_from_spec
from ..saes.base import SAE
from ..spec.plan import EncodePlan
from ..store import EncodedDocument, Store, StoreError
from ..store.placing import is_temporary
from .distributed import RayEngine, encode_on_ray
from ..validation import SKIP_BAD_ROWS, explained

logger = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
MAX_LISTED = 20  # bad rows named in one error message

_temporary_stores: "weakref.WeakSet[Store]" = weakref.WeakSet()
"""Stores made without a ``save_path``: deleted when no Dataset uses them, so an interrupted run there
cannot be resumed and no resume call is offered."""


def as_frame(data) -> pd.DataFrame:
    """The table as a DataFrame whose column names are distinct strings (the store keeps names as text)."""
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame or a list of dicts, not {type(data).__name__}")
    named = [c for c in data.columns if not isinstance(c, str)]
    if named:
        raise TypeError(f"column names must be strings, but {named[:5]} are not; rename them, e.g. "
                        "df.columns = df.columns.map(str)")
    repeated = sorted(set(data.columns[data.columns.duplicated()]))
    if repeated:
        raise ValueError(f"columns {repeated} appear more than once; give every column its own name")
    return data


def text_problem(text) -> str | None:
    """Why a value cannot be encoded, or None if it can."""
    if not isinstance(text, str):
        missing = text is None or (isinstance(text, float) and np.isnan(text))
        return "missing (None/NaN)" if missing else f"not a string ({type(text).__name__})"
    if not text.strip():
        return "empty"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid unicode (lone surrogate)"
    return None


def text_problems(texts: Iterable, first_row: int = 0) -> dict[int, str]:
    """``{row: why}`` for the texts that cannot be encoded, rows numbered from ``first_row``."""
    return {row: why for row, text in enumerate(texts, first_row) if (why := text_problem(text)) is not None}


def cannot_encode(field: str, problems: dict[int, str], count: int, name_row: Callable[[int], str]) -> ValueError:
    """The error for ``count`` texts that cannot be encoded, listing the first of ``problems`` (``name_row``
    says which row each is)."""
    listed = ", ".join(f"{name_row(row)}: {why}" for row, why in list(problems.items())[:MAX_LISTED])
    more = f" and {count - MAX_LISTED} more" if count > MAX_LISTED else ""
    return explained(ValueError, f"column {field!r} has {count} value(s) that cannot be encoded: {listed}{more}. "
                     "Fix them, or pass ", SKIP_BAD_ROWS, " to keep those rows without activations.")


def check_on_error(on_error: str) -> str:
    """``on_error`` if it is ``"raise"`` or ``"skip"``, else a ValueError naming it."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    return on_error


def check_field(field: str, columns: list[str]) -> None:
    """A KeyError that lists the columns when ``field`` is not one of them."""
    if field not in columns:
        raise KeyError(f"field {field!r} is not a column; available columns: {[str(c) for c in columns]}")


def rows_to_skip(frame: pd.DataFrame, field: str, on_error: str) -> dict[int, str]:
    """``{row: why}`` for texts that cannot be encoded; with ``on_error="raise"`` any such row is an error
    that lists them (row position, index label and reason)."""
    check_on_error(on_error)
    check_field(field, list(frame.columns))
    problems = text_problems(frame[field].tolist())
    if problems and on_error == "raise":
        raise cannot_encode(field, problems, len(problems), lambda row: f"row {row} (index {frame.index[row]!r})")
    return problems


def checked_batches(batches: pa.RecordBatchReader, field: str,
                    on_error: str) -> Iterator[tuple[pa.RecordBatch, dict[int, str]]]:
    """Each batch with its rows whose text (in ``field``, a column) cannot be encoded, ``{row in the table: why}``;
    with ``on_error="raise"``, once every row is checked, an error listing them (as :func:`rows_to_skip`'s)."""
    first: dict[int, str] = {}  # the rows an error lists: memory does not grow with the table's bad rows
    count = row = 0
    for batch in batches:
        problems = text_problems(batch.column(field).to_pylist(), row)
        count += len(problems)
        first.update(list(problems.items())[: MAX_LISTED - len(first)])
        yield batch, problems
        row += batch.num_rows
    if count and on_error == "raise":
        raise cannot_encode(field, first, count, lambda row: f"row {row}")


def create_store(data, sae: SAE, field: str, save_path: str | Path | None, on_error: str, plan: EncodePlan,
                 feature_labels: dict[int, str] | None, dataset_description: str) -> Store:
    """Check the table and write a new store for it (nothing encoded yet) at ``save_path`` (see :func:`new_store`).

    ``data`` is a DataFrame, a list of dicts, or a ``pyarrow.RecordBatchReader``, whose batches are checked
    and written one at a time: that table is never whole in memory.
    """
    streamed = isinstance(data, pa.RecordBatchReader)
    if streamed:
        check_on_error(on_error)
        check_field(field, data.schema.names)
    else:
        frame = as_frame(data)
        skipped = rows_to_skip(frame, field, on_error)
    if not isinstance(plan, EncodePlan):
        raise TypeError(f"plan must be an EncodePlan, not {type(plan).__name__}")
    labels = feature_labels if feature_labels is not None else sae.feature_labels()

    def make(path: Path) -> Store:
        if streamed:
            return Store.create_from_batches(path, data.schema, checked_batches(data, field, on_error), field,
                                             sae.describe(), plan, labels, dataset_description)
        return Store.create(path, frame, field, sae.describe(), plan, skipped, labels, dataset_description)

    return new_store(save_path, make)


def new_store(save_path: str | Path | None, make: Callable[[Path], Store]) -> Store:
    """``make(path)`` at ``save_path``; without one, in a temporary folder deleted when no Dataset uses the store
    any more or the process exits (``save_to_file`` keeps a copy)."""
    temporary = save_path is None
    path = Path(tempfile.mkdtemp(prefix="interp_embed-", suffix=".iembed")) if temporary else Path(save_path)
    warn_if_pickle_name(path)
    try:
        store = make(path)
    except BaseException:
        if temporary:
            shutil.rmtree(path, ignore_errors=True)
        raise
    if temporary:
        weakref.finalize(store, shutil.rmtree, path, ignore_errors=True)
        _temporary_stores.add(store)
    return store


_WARNED_PICKLE_NAMES: set[str] = set()


def warn_if_pickle_name(path: Path) -> None:
    """Warn (once per path) that a store named like a pickle file (``my_dataset.pkl``) is a folder."""
    if path.suffix.lower() in (".pkl", ".pickle") and str(path) not in _WARNED_PICKLE_NAMES:
        _WARNED_PICKLE_NAMES.add(str(path))
        logger.warning("%s will be a folder (a dataset store), not a pickle file; the name is kept as given, "
                       "but a name ending in .iembed says what it is", path)


def check_encoder(store: Store, sae: SAE) -> None:
    """Refuse an SAE that is not the encoder the store records: mixing two encodings gives wrong data. An SAE whose
    arithmetic is ``"auto"`` and not settled yet takes the store's."""
    if store.encoder.reader is not None:
        sae.adopt_arithmetic(store.encoder.reader.dtype)
    differences = store.encoder.differences(sae.identity())
    if differences:
        recorded = store.encoder.reader and store.encoder.reader.dtype
        arithmetic = f" in its arithmetic (dtype={recorded!r}, or 'auto')" if recorded != sae.arithmetic() else ""
        raise ValueError(f"{store.path} was encoded by another reader or SAE ({'; '.join(differences)}); "
                         f"use the SAE it was encoded with{arithmetic}")


def encoder_of(store: Store, sae: SAE | None = None) -> SAE:
    """``sae`` after checking it against the store; without one, the bundled default SAE when the store records it.

    A store may come from someone else, and its record of the SAE that encoded it is data: rebuilding any other SAE
    from it would let the store choose what is downloaded (a hub release, gigabytes of weights) or read (a folder
    of this machine). The bundled default ships inside the package, so rebuilding it reads nothing else; any other
    SAE is asked for by name, and checked against the record like the default.
    """
    if sae is None:
        source = store.encoder.source
        if source is None:
            raise StoreError(f"{store.path} does not record which SAE encoded it, so nothing can be encoded with it")
        if source.get("type") != DefaultSAE.kind:
            raise StoreError(
                f"{store.path} was encoded with another SAE than the bundled default ({store.encoder.summary()}), and "
                "only the bundled default SAE is rebuilt from a store's record (a store never chooses what is "
                "downloaded or read outside it): pass sae= the SAE that encoded it, e.g. "
                f"Dataset.load_from_file({str(store.path)!r}, sae=LocalSAE(path=...))")
        sae = sae_from_spec(source)
    check_encoder(store, sae)
    return sae


@contextmanager
def loaded_models(sae: SAE) -> Iterator[tuple]:
    """``(reader, sae model, sae device)`` for the duration of the block; freed afterwards if loaded here."""
    already = sae.is_loaded()
    try:
        yield sae.load()
    finally:
        if not already:
            sae.destroy()


def encode_pending(store: Store, sae: SAE, ray: RayEngine | None = None) -> None:
    """Encode every row of ``store`` that is neither committed nor skipped, committing chunk by chunk: in this
    process, or on Ray workers with ``ray`` (see distributed.py). A run that stops says what is kept and how to
    resume (:func:`log_how_to_resume`): after Ctrl-C at any point, after a failure once encoding has begun (a
    model that fails to load is not an encoding to resume)."""
    if store.is_complete():
        return
    check_encoder(store, sae)
    with store.writing():
        encoding = False
        try:
            if ray is not None:
                encoding = True
                encode_on_ray(store, sae, ray)
            else:
                from .pipeline import Encoder, encode_chunks  # torch runs the models; planning and loading need none

                with loaded_models(sae) as (reader, model, sae_device):
                    encoder = Encoder(reader, model, store.plan, sae_device=sae_device)
                    encoding = True
                    encode_chunks(store, encoder)
        except BaseException as stop:
            if encoding or isinstance(stop, KeyboardInterrupt):
                log_how_to_resume(store, stop)
            raise


@dataclass(frozen=True)
class StopReport:
    """How a stopped encoding says what is kept and how to resume: in the words of whoever started it."""

    resume_call: Callable[[Path], str]
    """The call (or command) that resumes the store at a path."""
    say: Callable[[str], None]
    """Where the message goes."""


_STOP_REPORT: ContextVar[StopReport] = ContextVar("stop_report", default=StopReport(
    lambda path: f"Dataset.load_from_file({str(path)!r}, resume=True)", logger.warning))


@contextmanager
def stop_report(resume_call: Callable[[Path], str], say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, a stopped encoding of the store at ``path`` says to resume it with ``resume_call(path)``,
    through ``say`` (the command line prints its own command) instead of logging the Python call."""
    token = _STOP_REPORT.set(StopReport(resume_call, say))
    try:
        yield
    finally:
        _STOP_REPORT.reset(token)


def log_how_to_resume(store: Store, stop: BaseException) -> None:
    """Say, after Ctrl-C or a crash, what is kept and the exact call that finishes the run: a person who
    interrupted a long encoding should not have to know that committed chunks survive, nor how to resume."""
    why = "interrupted" if isinstance(stop, KeyboardInterrupt) else f"stopped by {type(stop).__name__}"
    report = _STOP_REPORT.get()
    if is_temporary(store.path.name):  # built aside to replace a store (overwrite): removed, the old one kept
        report.say(f"Encoding {why}; the store it was to replace is unchanged (it is replaced only by a complete "
                   "store), and this run's rows are not kept")
        return
    to_encode = store.n_documents - len(store.skipped)
    done = to_encode - store.pending_rows().size
    if store in _temporary_stores:
        logger.warning("Encoding %s after %d rows; the store was temporary, so nothing is kept: pass save_path= "
                       "to keep committed chunks and resume later", why, done)
        return
    report.say(f"Encoding {why}; {done} of {to_encode} rows are committed in {store.path}. "
               f"Resume with: {report.resume_call(store.path)}")


def encode_text(store: Store, sae: SAE, text: str) -> EncodedDocument:
    """Encode one text (not stored) exactly as the store's documents were encoded."""
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(f"text cannot be encoded: {problem}")
    check_encoder(store, sae)
    from .pipeline import Encoder

    with loaded_models(sae) as (reader, model, sae_device):
        [doc] = Encoder(reader, model, store.plan, sae_device).encode_rows([0], [text])
    return doc

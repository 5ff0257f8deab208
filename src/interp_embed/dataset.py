"""The user-facing ``Dataset`` and ``DatasetRow``: the original interp_embed's API, over a safe store.

A ``Dataset`` is a view — a store on disk plus the positions of the rows it shows — so slicing, masking
and sorting never copy activations; a dataset and its views share one handle on the reader and SAE that read new
text for them (``interp_embed.encode.models``). Encoding happens in ``interp_embed.encode.session``; the analyses
are the functions of ``interp_embed.analysis``, bound here as methods. Loading and analysing never
imports torch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from pathlib import Path
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import analysis
from .analysis.blockwise import check_blockwise
from .encode import session
from .encode.distributed import engine_for
from .encode.models import Models
from .encode.table_files import ROWS_PER_BATCH, jsonl_batches, parquet_batches
from .highlight import Highlighted, HighlightedDocuments
from .labeling import dataset_labels
from .labeling import run as labeling_run
from .labeling.llm import run_sync
from .report import write_report
from .saes import DefaultSAE
from .saes.base import SAE
from .spec.plan import EncodePlan
from .store import EncodedDocument, EncoderRecord, FeatureWords, Store
from .store.reading import StoredRows
from .store.chunk import stored_values
from .store.placing import replacing
from .store.pooling import aggregate, above_threshold, check_aggregation, pool_tokens
from .store.labels import SOURCES
from .validation import (Bool, Choice, Features, Int, MemorySize, Number, OrNone, check_features, explained, resume,
                         validate_params)

logger = logging.getLogger(__name__)


NOT_ENCODED_WARNING = "%s: %d rows are not encoded yet; load with resume=True to finish"
"""What opening an unfinished store logs (the command line says it in its own words instead)."""


class DatasetRow:
    """One document: its metadata row, its text, and its token-level activations."""

    def __init__(self, dataset: "Dataset", row: int, extra: dict | None = None):
        self._dataset = dataset
        self._store = dataset._store
        self._row = row
        self.field = self._store.field
        self.row = {**self._store.documents().iloc[row].to_dict(), **(extra or {})}
        self.document = self.row[self.field]

    def _document(self) -> EncodedDocument | None:
        """The row's tokens and activations, read from the store once per row object (spans, tokens and
        activations are usually asked for together). A compact store keeps no tokens: the row is encoded again
        by the store's reader and SAE (see :meth:`Dataset.recomputing`)."""
        if not hasattr(self, "_read"):
            if self._store.plan.token_level:
                self._read = self._store.document(self._row)
            elif not self._store.encoded_mask()[self._row]:
                self._read = None
            else:
                doc = self._dataset._models.encode_text(self.document)
                # As a stored row reads: values as the store keeps them, read as float32.
                self._read = dataclasses.replace(doc, row=self._row,
                                                 act_values=stored_values(doc.act_values).astype(np.float32))
        return self._read

    def row_record(self) -> dict:
        return self.row

    def _encoded(self) -> EncodedDocument:
        doc = self._document()
        if doc is None:
            skipped = self._store.skipped.get(self._row)
            raise explained(ValueError, f"row {self._row} has no activations: ",
                            *([skipped] if skipped else ["not encoded yet; ", resume(self._store.path)]))
        return doc

    def tokens(self) -> list[str]:
        """The document's tokens as slices of its text; a character split over two tokens goes to the first."""
        pieces, done = [], 0
        for start, end in self._encoded().spans:
            start = max(int(start), done)
            pieces.append(self.document[start:end] if end > start else "")
            done = max(done, int(end))
        return pieces

    def spans(self) -> np.ndarray:
        """(tokens, 2): each token's character [start, end) in the document."""
        return self._encoded().spans

    @validate_params(compress=Bool(), activated_threshold=Number())
    def latents(self, activation_type: str = "max", compress: bool = True, activated_threshold: float = 0.0):
        """This document's pooled 1 × features row (``max``, ``mean``, ``sum``, ``binarize``, ``count``; see
        :meth:`Dataset.latents`), or with ``"all"`` its token × features activations.

        A scipy.sparse.csr_matrix; ``compress=False`` gives the same values as a dense numpy array.
        """
        matrix = self._latents(activation_type, activated_threshold)
        return matrix if compress else matrix.toarray()

    def _latents(self, aggregation: str, activated_threshold: float) -> sp.csr_matrix:
        d_sae = self._store.d_sae
        if aggregation == "all":
            doc = self._encoded()
            return sp.csr_matrix((doc.act_values, doc.act_features, doc.act_ptr), shape=(len(doc.spans), d_sae))
        check_aggregation(aggregation)
        threshold = activated_threshold
        if not self._store.plan.token_level:  # the stored pooled row (a threshold on tokens is refused there)
            return self._store.row_latents(self._row, aggregation)
        doc = self._document()
        if doc is None:
            return sp.csr_matrix((1, d_sae), dtype=np.float32)
        tokens = np.array([len(doc.token_ids)])
        stats = (above_threshold(tokens, np.diff(doc.act_ptr), doc.act_features, doc.act_values, threshold, d_sae)
                 if threshold > 0 else pool_tokens(tokens, np.diff(doc.act_ptr), doc.act_features, doc.act_values, d_sae))
        return aggregate(stats, aggregation, d_sae)

    def token_activations(self, feature: int, as_string: bool = True, left_marker: str = "<<", right_marker: str = ">>"):
        """The text with tokens where ``feature`` is active wrapped in markers, or per-token activations.

        >>> ds[0].token_activations(feature=4619)     # doctest: +SKIP
        '<<Good>> morning!'
        """
        check_features([feature], self._store.d_sae, "feature", sae=self._store.encoder)
        column = self._latents("all", 0.0)[:, feature].toarray().ravel()
        if as_string:  # a str; in a notebook, HTML with the tokens shaded by activation
            return Highlighted.of(self.document, self._encoded().spans, column, left_marker, right_marker)
        return [{"token": token, "activation": float(a)} for token, a in zip(self.tokens(), column)]

    def __repr__(self) -> str:
        text = self.document if len(self.document) <= 60 else self.document[:57] + "..."
        return f"DatasetRow({text!r})"


def _analysis_method(function, name: str):
    """A Dataset method that calls ``function(dataset, ...)``: same parameters, defaults and docstring."""
    @functools.wraps(function)
    def method(self, *args, **kwargs):
        return function(self, *args, **kwargs)

    method.__name__, method.__qualname__ = name, f"Dataset.{name}"
    return method


class Dataset:
    """A table of documents with the SAE features the reader sees in each.

    Encoding starts at construction and is committed to ``save_path`` chunk by chunk; an interrupted
    run continues with ``Dataset.load_from_file(save_path, resume=True)``. Without ``save_path`` the
    store lives in a temporary folder (see :meth:`save_to_file`). A ``save_path`` that holds a store is
    refused, unless ``overwrite=True``: then the new store is built and encoded beside it and replaces it whole
    once complete (an interrupted run leaves the old store as it was, and is not resumable). ``sae`` defaults to
    :class:`~interp_embed.saes.DefaultSAE` (the bundled reader and SAE); ``plan`` cuts the work
    (:class:`~interp_embed.spec.plan.EncodePlan`: chunk size on disk, batch size, windows).

    ``batch_size`` (the original's documents per batch) sets ``plan=EncodePlan(batch_tokens=batch_size *
    window_tokens)``: room for that many documents of a full window each; give it or ``plan``, not both.
    ``save_every_batch`` is accepted and has nothing left to set: every chunk of rows is committed to
    disk as soon as it is encoded. ``rows`` (the original's precomputed rows) can only be None: to
    reuse activations, take rows of an existing dataset (``ds[...]``) or join datasets (:meth:`concat`).

    ``data`` is a pandas DataFrame, a list of dicts, or a ``pyarrow.RecordBatchReader``: a table read a batch of
    rows at a time and never whole in memory (:meth:`from_parquet` and :meth:`from_jsonl` make one of a file).

    ``engine="ray"`` encodes on ``num_workers`` Ray workers (one per GPU by default), on this machine or on the
    cluster at ``ray_address`` (see :mod:`interp_embed.encode.distributed`); the store and its activations are
    those a single process writes. It needs the ``ray`` extra (``pip install 'interp_embed[ray]'``).

    Rows whose text is None, NaN, empty or not a string raise an error listing them
    (``on_error="raise"``) or are kept without activations (``on_error="skip"``).

    ``name`` (default: the stem of ``save_path``, ``"reviews"`` for ``reviews.iembed``; None for a temporary
    store, and for a slice or mask, whose name you set with ``view.name = "..."``) names the dataset's
    columns in a diff (``freq_reviews``).

    >>> import pandas as pd
    >>> from interp_embed import Dataset
    >>> df = pd.DataFrame({"text": ["Good morning!", "Hello there!", "Good afternoon."]})
    >>> ds = Dataset(df, save_path="greetings.iembed")           # doctest: +SKIP
    >>> ds.latents().shape                                        # doctest: +SKIP
    (3, 8192)
    """

    @validate_params(save_every_batch=Int(min=1), batch_size=OrNone(Int(min=1)), overwrite=Bool())
    def __init__(self, data, sae: SAE | None = None, field: str = "text", save_path: str | Path | None = None,
                 dataset_description: str = "", on_error: str = "raise", compute_activations: bool = True,
                 feature_labels: dict[int, str] | None = None, plan: EncodePlan | None = None,
                 name: str | None = None, rows=None, save_every_batch: int = 5, batch_size: int | None = None,
                 engine: str = "local", num_workers: int | None = None, ray_address: str | None = None,
                 overwrite: bool = False):
        if rows is not None and any(row is not None for row in rows):
            raise TypeError("rows= (precomputed DatasetRow objects) is not supported: a Dataset views the rows of its "
                            "store, so take rows of an existing dataset with ds[...] or join datasets with "
                            "Dataset.concat([...]).")
        ray = engine_for(engine, num_workers, ray_address)
        if batch_size is not None:
            if plan is not None:
                raise TypeError("give plan= or batch_size=, not both (batch_size=n is "
                                "EncodePlan(batch_tokens=n * window_tokens)).")
            plan = _plan_for_batch_size(batch_size, EncodePlan())
        name = _check_name(name, save_path)
        sae = sae if sae is not None else DefaultSAE()
        with replacing(save_path, overwrite) as path:  # save_path, or a store's replacement
            store = session.create_store(data, sae, field, path, on_error, plan or EncodePlan(), feature_labels,
                                         dataset_description)
            if compute_activations:
                session.encode_pending(store, sae, ray)
        store = store if path == save_path else Store.open(save_path)  # swapped in for the old store
        self._show(store, np.arange(store.n_documents), Models(store, sae), name, None)

    @classmethod
    def _from_store(cls, store: Store, rows, models: Models | None = None, name: str | None = None,
                    columns: pd.DataFrame | None = None) -> "Dataset":
        """A dataset over ``rows`` of a store that already exists — what loading, concatenating, slicing, masking and
        sorting return. It shares the store (nothing is copied) and encodes nothing. ``models`` is the handle of the
        dataset it is taken from (shared, see :mod:`interp_embed.encode.models`), a new one for a store just opened;
        ``columns`` are the view's own columns, one row per row shown (see :meth:`sort_by_features`)."""
        dataset = cls.__new__(cls)  # not __init__: that creates a store and encodes
        dataset._show(store, rows, models if models is not None else Models(store), name, columns)
        return dataset

    def _show(self, store: Store, rows, models: Models, name: str | None, columns: pd.DataFrame | None) -> None:
        """Every attribute a dataset has, set once, by ``__init__`` and :meth:`_from_store` alike."""
        self._store, self._rows, self._models = store, np.asarray(rows, dtype=np.int64), models
        self.name, self._extra = name, columns

    @classmethod
    def from_parquet(cls, path: str | Path, field: str = "text", batch_rows: int = ROWS_PER_BATCH,
                     **options) -> "Dataset":
        """Encode a Parquet file that need not fit in memory: it is read ``batch_rows`` rows at a time, each batch
        checked and written to the store, and each chunk of rows read back from the store as it is encoded.

        ``options`` are :class:`Dataset`'s (``sae``, ``save_path``, ``on_error``, ``plan`` ...); the result is
        that of ``Dataset(pd.read_parquet(path), field=field, **options)``, and a bad text is named by its row
        in the file.

        >>> ds = Dataset.from_parquet("reviews.parquet", field="text", save_path="reviews.iembed")   # doctest: +SKIP
        """
        return cls(parquet_batches(path, batch_rows), field=field, **options)

    @classmethod
    def from_jsonl(cls, path: str | Path, field: str = "text", batch_rows: int = ROWS_PER_BATCH,
                   **options) -> "Dataset":
        """Encode a JSON lines file (one object per line) that need not fit in memory, as :meth:`from_parquet`
        does a Parquet file. The file is read twice, a batch at a time: first to find each column's type.

        >>> ds = Dataset.from_jsonl("reviews.jsonl", field="text", save_path="reviews.iembed")   # doctest: +SKIP
        """
        return cls(jsonl_batches(path, field, batch_rows), field=field, **options)

    @classmethod
    @validate_params(batch_size=OrNone(Int(min=1)))
    def load_from_file(cls, file_path: str | Path, resume: bool = False, batch_size: int | None = None,
                       sae: SAE | None = None, name: str | None = None, engine: str = "local",
                       num_workers: int | None = None, ray_address: str | None = None) -> "Dataset":
        """Open a saved dataset (reads its manifest, and checks its documents table against it). ``resume=True`` encodes the rows still missing.

        A resumed run cuts its batches as the store's first run did (so that its activations are those of an
        uninterrupted run): ``batch_size`` is checked but not applied, with a warning when it asks for other
        batches than the store's.

        ``sae`` is the SAE to encode with, to resume or to recompute a compact store's highlights; it must be the SAE
        that encoded the store. It may be left out only for a store encoded with the bundled ``DefaultSAE``: no other
        SAE is rebuilt from a store's record, so that a store never chooses what is downloaded or read outside it.
        Loading never unpickles and never imports torch (resuming does, to run the reader). ``name`` defaults to the
        folder's stem. ``engine``, ``num_workers`` and ``ray_address`` choose where a resumed run encodes, as for
        :class:`Dataset`.

        >>> ds = Dataset.load_from_file("greetings.iembed")           # doctest: +SKIP
        """
        ray = engine_for(engine, num_workers, ray_address)
        store = Store.open(file_path)
        if batch_size is not None and _plan_for_batch_size(batch_size, store.plan) != store.plan:
            logger.warning("%s: batch_size=%d ignored; resuming uses the store's batches (batch_tokens=%d) so that "
                           "the activations match an uninterrupted run", file_path, batch_size, store.plan.batch_tokens)
        if sae is not None:
            session.check_encoder(store, sae)
        dataset = cls._from_store(store, np.arange(store.n_documents), Models(store, sae), _check_name(name, file_path))
        if resume and not store.is_complete():
            session.encode_pending(store, dataset._models.encoder(), ray)
        elif not store.is_complete():
            logger.warning(NOT_ENCODED_WARNING, file_path, store.pending_rows().size)
        return dataset

    @validate_params(overwrite=Bool())
    def save_to_file(self, file_path: str | Path | None = None, dtype=np.float32, overwrite: bool = False) -> Path:
        """Write this dataset — all of it, or just the rows of this view, in its order — to a new store.

        Activations are copied as stored (``dtype`` may only be float32, the type :meth:`latents` returns).
        Columns that :meth:`sort_by_features` added to a view are not part of the store and are not written.
        The store appears at ``file_path`` whole, once written; a store already there is refused, or with
        ``overwrite=True`` replaced whole (never the store this dataset reads).
        """
        if file_path is None:
            raise TypeError(f"save_to_file needs a folder path for the new store (this dataset's store is "
                            f"{str(self._store.path)!r}).")
        if np.dtype(dtype) != np.float32:
            raise ValueError(f"dtype={dtype!r} is not supported: activations are saved as stored and read as float32.")
        if self._extra is not None:
            logger.warning("columns %s belong to this view only and are not saved", list(self._extra.columns))
        session.warn_if_pickle_name(Path(file_path))
        return self._store.copy_rows(self._rows, file_path, overwrite).path

    @classmethod
    @validate_params(overwrite=Bool())
    def concat(cls, datasets: Sequence["Dataset"], save_path: str | Path | None = None,
               name: str | None = None, overwrite: bool = False) -> "Dataset":
        """One dataset holding the rows of ``datasets`` (datasets or views), in order, with their activations.

        Nothing is encoded again: activations are copied into a new store at ``save_path`` (temporary when
        None). Every dataset must have been encoded by the same reader and SAE and use the same text field;
        the metadata columns are united (a column one dataset lacks is missing in its rows), and the feature
        labels are the first dataset's. Rows not encoded yet stay pending (``load_from_file(save_path,
        resume=True)`` encodes them). ``a + b`` is ``Dataset.concat([a, b])``. ``overwrite=True`` replaces a store
        at ``save_path``, whole, as :meth:`save_to_file` does.

        >>> both = Dataset.concat([reviews_2023, reviews_2024], save_path="reviews.iembed")   # doctest: +SKIP
        >>> both.associate("year")                                                           # doctest: +SKIP
        """
        from .analysis.inputs import check_same_encoder

        if isinstance(datasets, (str, bytes, Dataset)) or not isinstance(datasets, Sequence) or not datasets:
            raise TypeError("datasets must be a non-empty list of Dataset objects, e.g. Dataset.concat([a, b]).")
        for i, ds in enumerate(datasets):
            if not isinstance(ds, Dataset):
                raise TypeError(f"datasets[{i}] is a {type(ds).__name__}, not an interp_embed Dataset.")
        check_same_encoder({f"datasets[{i}]": ds for i, ds in enumerate(datasets)})
        fields = {ds.field for ds in datasets}
        if len(fields) > 1:
            raise ValueError(f"the datasets keep their text in different columns ({sorted(fields)}); rename one "
                             "column so that they match before concatenating.")
        first = datasets[0]
        store = session.new_store(save_path, lambda path: Store.combine([(ds._store, ds._rows) for ds in datasets], path,
                                                                        overwrite))
        models = Models(store, first.sae)  # a new store, a new handle: with the SAE that encoded every part, if chosen
        return cls._from_store(store, np.arange(store.n_documents), models, _check_name(name, save_path))

    def __add__(self, other: "Dataset") -> "Dataset":
        if not isinstance(other, Dataset):
            return NotImplemented
        return Dataset.concat([self, other])

    def _view(self, positions: np.ndarray, **columns) -> "Dataset":
        """The rows at ``positions``, with this view's added columns (and ``columns``, one value per row) kept; the
        view shares this dataset's models."""
        extra = None if self._extra is None else self._extra.iloc[positions].reset_index(drop=True)
        if columns:
            extra = (extra if extra is not None else pd.DataFrame(index=range(len(positions)))).assign(**columns)
        return type(self)._from_store(self._store, self._rows[positions], self._models, columns=extra)

    @property
    def sae(self) -> SAE | None:
        """The SAE that encoded this dataset and reads new text for it: the one given, or once text has been read,
        the bundled default rebuilt from the store's record (None until then). Setting it gives this dataset (and the
        views taken from it afterwards) that SAE, checked against the store at every use; views taken before keep
        theirs."""
        return self._models.sae

    @sae.setter
    def sae(self, sae: SAE | None) -> None:
        self._models = Models(self._store, sae)  # a handle of its own: the shared one's SAE is never replaced

    # ---- activations ----------------------------------------------------------------------------
    @property
    def d_sae(self) -> int:
        """Number of SAE features."""
        return self._store.d_sae

    @property
    def field(self) -> str:
        return self._store.field

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def token_level(self) -> bool:
        """Whether the store keeps every token's activations; False for a compact store (pooled activations only,
        ``EncodePlan(token_level=False)``), whose highlights are recomputed per document."""
        return self._store.plan.token_level

    @property
    def store_rows(self) -> np.ndarray:
        """Each document's row in the store this dataset views (what stored labels record as examples)."""
        return self._rows.copy()

    @property
    def stored(self) -> StoredRows:
        """This dataset's rows in its store: what analyses, labelling and the report read block by block, and the
        labels kept there (see :class:`~interp_embed.store.reading.StoredRows`)."""
        return StoredRows(self._store, self._rows)

    @property
    def encoder(self) -> EncoderRecord:
        """What encoded this dataset: reader, layer, role, SAE configuration and weights (as the store records)."""
        return self._store.encoder

    @property
    def dataset_description(self) -> str:
        """What the dataset is, as given at creation; setting it records it in the store."""
        return self._store.dataset_description

    @dataset_description.setter
    def dataset_description(self, text: str) -> None:
        self._store.set_description(text)

    @validate_params(compress=Bool(), activated_threshold=Number(), memory_limit=MemorySize())
    def latents(self, aggregation_method: str = "max", compress: bool = True, activated_threshold: float = 0.0,
                memory_limit: int | str | None = None):
        """Document × feature matrix (scipy.sparse.csr_matrix, float32) pooled over each document's own tokens;
        ``compress=False`` gives the same values as a dense numpy array.

        ``max``, ``mean`` or ``sum`` of the activations; ``count`` of the tokens where the feature is
        active; ``binarize``: 1 where it is active on any token. A token activation counts only above
        ``activated_threshold``. Rows without activations (skipped or not yet encoded) are all zero;
        see :meth:`encoded_mask`.

        ``memory_limit`` (bytes, or a string such as ``"4GB"``): a matrix that would take more memory is built
        on disk instead, one chunk of the store at a time, and returned memory-mapped (the same values; its files
        vanish with it); ``diff``, ``top_correlations`` and ``associate`` take the same argument and never build
        the matrix at all.

        >>> ds.latents("mean").shape      # doctest: +SKIP
        (3, 8192)
        """
        limit = check_blockwise(self, memory_limit)
        if aggregation_method == "all":
            raise ValueError("latents('all') is per document here: ds[i].latents('all') is document i's token × "
                             "feature matrix.")
        check_aggregation(aggregation_method)
        threshold = activated_threshold
        if self.stored.fits_in_memory(limit):
            matrix = self._store.latents(aggregation_method, threshold)[self._rows]
            return matrix if compress else matrix.toarray()
        if not compress:
            raise MemoryError(f"a dense {len(self):,} × {self.d_sae:,} array does not fit memory_limit; leave "
                              "compress=True for a sparse matrix built on disk")
        if threshold > 0:
            raise ValueError("activated_threshold > 0 pools every token again, which latents() does in memory only; "
                             "leave memory_limit=None, or use activated_threshold=0")
        return self.stored.latents_on_disk(aggregation_method, limit)

    def encoded_mask(self) -> np.ndarray:
        """True for rows that have activations."""
        return self._store.encoded_mask()[self._rows]

    def skipped_rows(self) -> dict[int, str]:
        """Positions (in this view) of rows kept without activations, with the reason."""
        skipped = self._store.skipped
        return {i: skipped[int(r)] for i, r in enumerate(self._rows) if int(r) in skipped}

    @validate_params(source=OrNone(Choice(("shipped", *SOURCES))))
    def feature_labels(self, source: str | None = None) -> dict[int, str]:
        """Each feature's newest label — whichever was written last of yours (:meth:`set_label`), an LLM's
        (:meth:`label_features`) and this dataset's own (:meth:`label_features_offline`), else the one shipped
        with the SAE — or with ``source`` (``shipped``, ``dataset``, ``llm`` or ``user``) the newest of that
        source only. :meth:`label_sources` says where each came from."""
        if source is None:
            return self._store.feature_labels()
        if source == "shipped":
            return self._store.shipped_labels()
        return {r.feature: r.label for r in self._store.label_records() if r.source == source}  # the newest wins

    def describe_feature(self, feature: int, k: int = 5):
        """Everything known of ``feature`` here: its label and where it came from, how often and how strongly it
        fires in this dataset, the words it fires on, its ``k`` strongest documents highlighted, and the summary
        its SAE shipped (:class:`~interp_embed.describe.FeatureDescription`; HTML in a notebook)."""
        from .describe import describe_feature

        return describe_feature(self, feature, k)

    @validate_params(feature=Features("self", one=True))
    def set_label(self, feature: int, label: str) -> None:
        """Give ``feature`` a label of your own; it is kept in the store and wins over earlier labels."""
        from .store.labels import LabelRecord

        if not isinstance(label, str) or not label.strip():
            raise ValueError("label must be a non-empty string.")
        self._store.add_label(LabelRecord(feature=feature, label=" ".join(label.split()), source="user"))

    def label_sources(self) -> pd.DataFrame:
        """Where each feature's label came from: one row per labelled feature, with ``feature_id``, ``label``,
        ``source`` (``shipped`` with the SAE, ``dataset`` from this dataset's words, ``llm`` or ``user``), ``model``,
        ``prompt_version``, ``seed``, the label's score when it was scored — an LLM's detection
        ``balanced_accuracy`` and ``fuzzing``, a dataset label's ``keyword_balanced_accuracy`` on held-out documents
        (:meth:`score_labels`) — and ``created``."""
        rows = {f: {"feature_id": f, "label": label, "source": "shipped"} for f, label in self._store.shipped_labels().items()}
        scores = ("balanced_accuracy", "fuzzing", "keyword_balanced_accuracy")
        for r in self._store.label_records():  # oldest first: the newest wins
            rows[r.feature] = {"feature_id": r.feature, "label": r.label, "source": r.source, "model": r.model,
                               "prompt_version": r.prompt_version, "seed": r.seed, "created": r.created,
                               **{k: (r.score or {}).get(k) for k in scores}}
        columns = ["feature_id", "label", "source", "model", "prompt_version", "seed", *scores, "created"]
        return pd.DataFrame([rows[f] for f in sorted(rows)], columns=columns).astype({"seed": "Int64"})

    # ---- labelling with a language model (see interp_embed.labeling) -----------------------------
    label_feature = _analysis_method(labeling_run.label_feature, "label_feature")
    score_feature = _analysis_method(labeling_run.score_feature, "score_feature")
    label_features = _analysis_method(labeling_run.label_features, "label_features")
    describe_diff = _analysis_method(labeling_run.describe_diff, "describe_diff")
    describe_association = _analysis_method(labeling_run.describe_association, "describe_association")

    def label_features_sync(self, features, **options) -> pd.DataFrame:
        """:meth:`label_features` for scripts (also works inside Jupyter's running event loop)."""
        return run_sync(labeling_run.label_features(self, features, **options))

    def label_feature_sync(self, feature: int, **options):
        """:meth:`label_feature` for scripts (also works inside Jupyter's running event loop)."""
        return run_sync(labeling_run.label_feature(self, feature, **options))

    def score_feature_sync(self, feature: int, **options):
        """:meth:`score_feature` for scripts (also works inside Jupyter's running event loop)."""
        return run_sync(labeling_run.score_feature(self, feature, **options))

    def feature_words(self) -> FeatureWords:
        """The words each feature fires on strongly in this dataset's documents (``fires_on(feature)`` lists the
        most specific); every table of features shows them, and search and clustering by query match against
        them. Each chunk's words are read once per store."""
        rows = np.unique(self._rows)
        return self._store.feature_words(None if rows.size == self._store.n_documents else rows)

    def document_words(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """``(presence, words)``: which words (and symbols) each encoded document of this dataset holds, in row order
        — a (documents, words) 0/1 matrix — and the words, lower-cased (see :meth:`feature_words`)."""
        rows, inverse = np.unique(self._rows[self.encoded_mask()], return_inverse=True)
        presence, words = self._store.document_words(rows)
        return presence[inverse.reshape(-1)], words

    # ---- labels from this dataset's own words (see interp_embed.labeling.dataset_labels) ---------------
    label_features_offline = _analysis_method(dataset_labels.label_features_offline, "label_features_offline")
    score_labels = _analysis_method(dataset_labels.score_labels, "score_labels")

    @validate_params(feature=Features("self", one=True), k=Int(min=0), document_only=Bool(), select_top=Bool())
    def top_documents_for_feature(self, feature: int, aggregation_type: str = "max", document_only: bool = True,
                                  k: int = 10, select_top: bool = True, include_nonactive_samples: bool = False):
        """The ``k`` documents where ``feature`` is strongest, annotated with << >> (or a view if not ``document_only``):
        a list of strings, which a notebook shows with the active tokens shaded by their activation.

        The documents are those of :meth:`sort_by_features` ``([feature])``, strongest first; ``select_top=False``
        takes the last ``k`` instead: the weakest active ones, or with ``include_nonactive_samples=True`` the
        documents where the feature is not active at all.

        >>> ds.top_documents_for_feature(feature=4436, k=3)   # doctest: +SKIP
        ['Good afternoon<<.>>', 'Good morning<<!>>', 'Hello there<<!>>']
        """
        ranked = self.sort_by_features([feature], aggregation_type, include_top_feature=not document_only,
                                       include_nonactive_samples=include_nonactive_samples)
        chosen = ranked[:k] if select_top else ranked[max(len(ranked) - k, 0):]
        if not document_only:
            return chosen
        with self.recomputing():  # the view shares this dataset's models, loaded once for all its rows
            return HighlightedDocuments(row.token_activations(feature) for row in chosen)

    def reads_text(self) -> bool:
        """Whether this dataset can read new text with the reader and SAE that encoded it (searches by query or by
        example, :meth:`latents_of_texts`): True when its SAE was given (``sae=``) or is the bundled default, which
        is rebuilt from the store's record; a store encoded with another SAE needs it passed to
        :meth:`load_from_file`. Nothing is loaded to answer."""
        return self._models.known()

    @contextlib.contextmanager
    def models_loaded(self):
        """Keep the reader and SAE that encoded this dataset loaded for the block, so that what reads text in it —
        searches by query or by example, :meth:`latents_of_texts`, a compact store's tokens — does not load them
        each time (a few seconds a call with the bundled models; a search then takes a fraction of a second).
        This dataset and every view of it share one reader and SAE (:mod:`interp_embed.encode.models`), so views taken
        before or inside the block use them too. Models loaded here are freed when the block ends; models you loaded
        yourself (``sae.load()``) stay loaded.

        >>> with ds.models_loaded():                                   # doctest: +SKIP
        ...     hits = [ds.search(q, by="query") for q in ["questions", "food and cooking"]]
        """
        with self._models.loaded():
            yield self

    @contextlib.contextmanager
    def recomputing(self):
        """:meth:`models_loaded` when this dataset's store is compact (pooled activations only,
        ``EncodePlan(token_level=False)``), where each row's tokens are recomputed by running them on it; otherwise
        nothing."""
        if self._store.plan.token_level:
            yield
            return
        with self.models_loaded():
            yield

    @validate_params(descending=Bool(), include_top_feature=Bool(), include_nonactive_samples=Bool())
    def sort_by_features(self, features: list[int], aggregation_type: str = "max", descending: bool = True,
                         include_top_feature: bool = True, include_nonactive_samples: bool = True) -> "Dataset":
        """A view of the rows sorted by the activations of ``features``, a list in order of priority.

        A row's top feature is the first of ``features`` active in it. Rows are sorted by two keys: the position
        of their top feature in ``features``, then its activation — from high to low when ``descending``
        (so rows whose top feature comes later in the list come first), else from low to high; ties keep
        the dataset's order. With one feature this is simply its activation. Rows where none is active come
        after the others when ``descending``, before them otherwise, or are dropped
        (``include_nonactive_samples=False``).

        ``include_top_feature`` adds three columns to the view's table (:meth:`pandas`, each row's ``row``):
        ``feature_activation`` (0 where none is active), ``top_feature_label`` (``"NA"`` there) and
        ``top_feature_index`` (-1 there). They belong to the view and the views taken from it; the store is
        not changed and :meth:`save_to_file` does not write them.
        """
        if isinstance(features, (int, np.integer, str, bytes)):
            raise TypeError(f"features must be a list of feature ids, e.g. [{features!r}], not {features!r}.")
        features = list(features)
        check_features(features, self.d_sae, sae=self.encoder)
        features = [int(f) for f in features]
        columns = self.latents(aggregation_type)[:, features].toarray()
        active = columns != 0
        any_active = active.any(axis=1)
        top = active.argmax(axis=1)  # position of the first active feature (0 where none is)
        value = np.where(any_active, columns[np.arange(len(columns)), top], 0).astype(np.float32)
        rows = np.flatnonzero(any_active)
        sign = -1 if descending else 1
        order = rows[np.lexsort((sign * value[rows], sign * top[rows]))]
        if include_nonactive_samples:
            inactive = np.flatnonzero(~any_active)
            order = np.r_[order, inactive] if descending else np.r_[inactive, order]
        if not include_top_feature:
            return self._view(order)
        labels = self.feature_labels()
        top_ids = np.array([features[t] if a else -1 for t, a in zip(top[order], any_active[order])], dtype=np.int64)
        top_labels = [labels.get(int(f), "") if f >= 0 else "NA" for f in top_ids]
        return self._view(order, feature_activation=value[order], top_feature_label=top_labels,
                          top_feature_index=top_ids)

    def sort_by_columns(self, columns, descending: bool = True) -> "Dataset":
        """A view sorted by metadata columns."""
        frame = self.pandas().reset_index(drop=True)
        return self._view(frame.sort_values(by=columns, ascending=not descending, kind="stable").index.to_numpy())

    def filter_na_rows(self) -> "Dataset":
        """A view without the rows that have no activations."""
        return self._view(np.flatnonzero(self.encoded_mask()))

    # ---- analyses: the functions of interp_embed.analysis with this dataset first ------------------
    diff = _analysis_method(analysis.diff_features, "diff")
    feature_correlations = _analysis_method(analysis.feature_correlations, "feature_correlations")
    top_correlations = _analysis_method(analysis.top_correlations, "top_correlations")
    associate = _analysis_method(analysis.associate_features, "associate")
    trend = _analysis_method(analysis.feature_trends, "trend")
    cluster = _analysis_method(analysis.cluster_documents, "cluster")
    search = _analysis_method(analysis.search_documents, "search")
    report = _analysis_method(write_report, "report")

    def latents_of_texts(self, texts: Sequence[str], aggregation_method: str = "max") -> sp.csr_matrix:
        """Pooled latents (texts × features, like :meth:`latents`) of texts that are not in this dataset, read by
        the reader and SAE that encoded it exactly as its documents were (same template). Runs the models,
        loaded once for all the texts."""
        check_aggregation(aggregation_method)
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise ValueError("texts must be a non-empty list of strings.")
        rows = []
        with self._models.loaded():
            for text in texts:
                doc = self._models.encode_text(text)
                stats = pool_tokens(np.array([len(doc.token_ids)]), np.diff(doc.act_ptr), doc.act_features,
                                    doc.act_values, self.d_sae)
                rows.append(aggregate(stats, aggregation_method, self.d_sae))
        return sp.vstack(rows).tocsr()

    def features_of_text(self, text: str, n_features: int = 5, max_coverage: float = 0.5) -> list[int]:
        """The features most specific to ``text`` relative to this dataset: those firing on most of its tokens
        weighted by how rare they are here (IDF), among the features active in this dataset in at most
        ``max_coverage`` of its documents.

        Runs the reader and SAE that encoded the dataset on ``text`` (same template); features firing on most
        documents (punctuation, position) are left out because they say nothing specific, and features that
        never fire here because they cannot find anything.
        """
        counts = np.asarray(self.latents_of_texts([text], "count").todense()).ravel()
        present = self.latents("binarize")[np.flatnonzero(self.encoded_mask())]
        coverage = np.asarray(present.mean(axis=0)).ravel()
        idf = np.log1p((1 - coverage) / np.maximum(coverage, 1e-12))
        weight = np.where((coverage > max_coverage) | (coverage == 0), 0.0, counts * idf)
        ranked = np.argsort(-weight, kind="stable")[:n_features]
        return [int(f) for f in ranked if weight[f] > 0]

    # ---- table access -----------------------------------------------------------------------------
    def pandas(self) -> pd.DataFrame:
        """The documents table of this dataset (text and every metadata column), in its row order."""
        frame = self._store.documents().iloc[self._rows]
        if self._extra is None:
            return frame
        return frame.assign(**{column: self._extra[column].to_numpy() for column in self._extra.columns})

    @validate_params(overwrite=Bool())
    def add_column(self, name: str, values, overwrite: bool = False) -> None:
        """Keep ``values`` as the column ``name`` of the dataset's store: it survives reloading, :meth:`concat` and
        :meth:`save_to_file`, and can be the target of :meth:`associate` or :meth:`trend`. The activations are not
        touched.

        ``values`` are one per document of this dataset (a list, an array, a boolean mask, or a pandas Series matched
        by its index when that holds exactly the labels of :meth:`pandas`, else taken in row order); on a view, the
        store's documents the view does not show get a missing value. A column that exists is replaced only with
        ``overwrite=True``; the text column never is. The store is written under its writer lock, atomically
        (``Store.add_column``).

        >>> ds.add_column("is_games", ds.pandas()["section"] == "games")   # doctest: +SKIP
        >>> Dataset.load_from_file(ds.path).associate("is_games")          # doctest: +SKIP
        """
        from .analysis.targets import aligned

        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, not {name!r}.")
        series = aligned(values, self.pandas(), f"the values of column {name!r}")
        if np.unique(self._rows).size != len(self._rows):
            raise ValueError("this view shows a document more than once, which could give it two values; add the "
                             "column on a view that shows each document once, or on the whole dataset.")
        n = self._store.n_documents
        if np.array_equal(self._rows, np.arange(n)):
            column = series.reset_index(drop=True)
        else:  # the documents this view does not show are missing
            column = pd.Series(series.to_numpy(), index=self._rows).reindex(np.arange(n))
        self._store.add_column(name, column, overwrite)

    def list(self) -> list[dict]:
        """The rows as dicts, one per document (column name: value)."""
        return self.pandas().to_dict(orient="records")

    def documents(self) -> list[str]:
        """The texts, in row order."""
        return self.pandas()[self.field].tolist()

    @property
    def columns(self) -> list:
        return self.pandas().columns.tolist()

    @validate_params(feature=Features("self", one=True))
    def token_activations(self, feature: int) -> list[str]:
        """Every document annotated with << >> around the tokens where ``feature`` is active (see
        :meth:`DatasetRow.token_activations`)."""
        return [row.token_activations(feature) for row in self]

    def dataset_rows(self) -> list[DatasetRow]:
        """The rows of this dataset, in order."""
        return list(self)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[DatasetRow]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            n = len(self._rows)
            if not -n <= index < n:
                raise IndexError(f"row {index} is out of range for a dataset of {n} rows")
            extra = None if self._extra is None else self._extra.iloc[int(index)].to_dict()
            return DatasetRow(self, int(self._rows[index]), extra)
        if isinstance(index, slice):
            return self._view(np.arange(len(self._rows))[index])
        selector = np.asarray(index.to_numpy() if isinstance(index, pd.Series) else index)
        if selector.dtype == bool:
            if selector.shape != (len(self._rows),):
                raise IndexError(f"a boolean mask must have {len(self._rows)} entries, not {selector.shape}")
            return self._view(np.flatnonzero(selector))
        if selector.dtype.kind in "iu":
            return self._view(selector.astype(np.int64))
        raise TypeError(f"index with an int, a slice, a boolean mask or integer positions, not {type(index).__name__}")

    def __repr__(self) -> str:
        return (f"Dataset({len(self)} rows, field={self.field!r}, {self.d_sae} features, "
                f"columns={[str(c) for c in self.columns]}, path={str(self._store.path)!r})")


def _plan_for_batch_size(batch_size, plan: EncodePlan) -> EncodePlan:
    """``plan`` with room per batch for ``batch_size`` documents of a full window each (the original's batch_size)."""
    return dataclasses.replace(plan, batch_tokens=batch_size * plan.window_tokens)


def _check_name(name, path: str | Path | None) -> str | None:
    """A dataset's name: ``name`` if given, else the stem of the store's ``path`` (None without one)."""
    if name is None:
        return Path(path).stem if path is not None else None
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}.")
    return name



DatasetView = Dataset
"""What slicing, masking, sorting and :meth:`Dataset.load_from_file` return: a ``Dataset`` (once a class of its own;
the name is kept for code that imports it)."""

"""The user-facing ``Dataset`` and ``DatasetRow``: the original interp_embed's API, over a safe store.

A ``Dataset`` is a view — a store on disk plus the positions of the rows it shows — so slicing, masking
and sorting never copy activations. Encoding happens in ``interp_embed.encode.session``; the analyses
are the functions of ``interp_embed.analysis``, bound here as methods. Loading and analysing never
imports torch.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import analysis
from .encode import session
from .encode.config import EncodePlan
from .highlight import Highlighted
from .labeling import run as labeling_run
from .labeling.llm import run_sync
from .report import write_report
from .saes.base import SAE
from .store import EncodedDocument, EncoderRecord, FeatureWords, Store
from .store.pooling import aggregate, above_threshold, check_aggregation, pool_tokens
from .validation import check_features, check_threshold

logger = logging.getLogger(__name__)


class DatasetRow:
    """One document: its metadata row, its text, and its token-level activations."""

    def __init__(self, dataset: "Dataset", row: int):
        self._store = dataset._store
        self._row = row
        self.field = self._store.field
        self.row = self._store.documents().iloc[row].to_dict()
        self.document = self.row[self.field]

    def row_record(self) -> dict:
        return self.row

    def _encoded(self) -> EncodedDocument:
        doc = self._store.document(self._row)
        if doc is None:
            reason = self._store.skipped.get(self._row, "not encoded yet; load with resume=True")
            raise ValueError(f"row {self._row} has no activations: {reason}")
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

    def latents(self, aggregation_method: str = "all", activated_threshold: float = 0.0) -> sp.csr_matrix:
        """``"all"``: the token × feature activations (csr); otherwise this document's pooled 1 × features row
        (``max``, ``mean``, ``sum``, ``binarize``, ``count``; see :meth:`Dataset.latents`)."""
        d_sae = self._store.d_sae
        if aggregation_method == "all":
            doc = self._encoded()
            return sp.csr_matrix((doc.act_values, doc.act_features, doc.act_ptr), shape=(len(doc.spans), d_sae))
        check_aggregation(aggregation_method)
        threshold = check_threshold(activated_threshold)
        doc = self._store.document(self._row)
        if doc is None:
            return sp.csr_matrix((1, d_sae), dtype=np.float32)
        tokens = np.array([len(doc.token_ids)])
        stats = (above_threshold(tokens, np.diff(doc.act_ptr), doc.act_features, doc.act_values, threshold, d_sae)
                 if threshold > 0 else pool_tokens(tokens, np.diff(doc.act_ptr), doc.act_features, doc.act_values, d_sae))
        return aggregate(stats, aggregation_method, d_sae)

    def token_activations(self, feature: int, as_string: bool = True, left_marker: str = "<<", right_marker: str = ">>"):
        """The text with tokens where ``feature`` is active wrapped in markers, or per-token activations.

        >>> ds[0].token_activations(feature=4619)     # doctest: +SKIP
        '<<Good>> morning!'
        """
        if not 0 <= feature < self._store.d_sae:
            raise IndexError(f"feature must be in [0, {self._store.d_sae}), not {feature}")
        column = self.latents("all")[:, feature].toarray().ravel()
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
    store lives in a temporary folder (see :meth:`save_to_file`). ``sae`` defaults to
    :class:`~interp_embed.saes.DefaultSAE` (the bundled reader and SAE); ``plan`` cuts the work
    (:class:`~interp_embed.encode.config.EncodePlan`: chunk size on disk, batch size, windows).

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

    def __init__(self, data, sae: SAE | None = None, field: str = "text", save_path: str | Path | None = None,
                 dataset_description: str = "", on_error: str = "raise", compute_activations: bool = True,
                 feature_labels: dict[int, str] | None = None, plan: EncodePlan | None = None,
                 name: str | None = None):
        from .saes import DefaultSAE

        self.name = _check_name(name, save_path)

        self.sae = sae if sae is not None else DefaultSAE()
        self._store = session.create_store(data, self.sae, field, save_path, on_error, plan or EncodePlan(),
                                           feature_labels, dataset_description)
        self._rows = np.arange(self._store.n_documents)
        if compute_activations:
            session.encode_pending(self._store, self.sae)

    @classmethod
    def load_from_file(cls, file_path: str | Path, resume: bool = False, sae: SAE | None = None,
                       name: str | None = None) -> "Dataset":
        """Open a saved dataset (reads only its manifest). ``resume=True`` encodes the rows still missing.

        ``sae`` is the SAE to encode with (by default the one the store records, rebuilt from its JSON);
        it must be the SAE that encoded the store. Loading never unpickles and never imports torch
        (resuming does, to run the reader). ``name`` defaults to the folder's stem.

        >>> ds = Dataset.load_from_file("greetings.iembed")           # doctest: +SKIP
        """
        store = Store.open(file_path)
        if sae is not None:
            session.check_encoder(store, sae)
        dataset = DatasetView(store, np.arange(store.n_documents), sae, name=_check_name(name, file_path))
        if resume and not store.is_complete():
            dataset.sae = session.encoder_of(store, sae)
            session.encode_pending(store, dataset.sae)
        elif not store.is_complete():
            logger.warning("%s: %d rows are not encoded yet; load with resume=True to finish",
                           file_path, store.pending_rows().size)
        return dataset

    def save_to_file(self, file_path: str | Path) -> Path:
        """Write this dataset — all of it, or just the rows of this view, in its order — to a new store."""
        return self._store.copy_rows(self._rows, file_path).path

    @classmethod
    def concat(cls, datasets: Sequence["Dataset"], save_path: str | Path | None = None,
               name: str | None = None) -> "Dataset":
        """One dataset holding the rows of ``datasets`` (datasets or views), in order, with their activations.

        Nothing is encoded again: activations are copied into a new store at ``save_path`` (temporary when
        None). Every dataset must have been encoded by the same reader and SAE and use the same text field;
        the metadata columns are united (a column one dataset lacks is missing in its rows), and the feature
        labels are the first dataset's. Rows not encoded yet stay pending (``load_from_file(save_path,
        resume=True)`` encodes them). ``a + b`` is ``Dataset.concat([a, b])``.

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
        store = session.new_store(save_path, lambda path: Store.combine([(ds._store, ds._rows) for ds in datasets], path))
        return DatasetView(store, np.arange(store.n_documents), first.sae, name=_check_name(name, save_path))

    def __add__(self, other: "Dataset") -> "Dataset":
        if not isinstance(other, Dataset):
            return NotImplemented
        return Dataset.concat([self, other])

    def _view(self, positions: np.ndarray) -> "DatasetView":
        return DatasetView(self._store, self._rows[positions], self.sae)

    # ---- activations ----------------------------------------------------------------------------
    @property
    def d_sae(self) -> int:
        return self._store.d_sae

    @property
    def field(self) -> str:
        return self._store.field

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def store_rows(self) -> np.ndarray:
        """Each document's row in the store this dataset views (what stored labels record as examples)."""
        return self._rows.copy()

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

    def latents(self, aggregation_method: str = "max", activated_threshold: float = 0.0) -> sp.csr_matrix:
        """Document × feature matrix (scipy.sparse.csr_matrix, float32) pooled over each document's own tokens.

        ``max``, ``mean`` or ``sum`` of the activations; ``count`` of the tokens where the feature is
        active; ``binarize``: 1 where it is active on any token. A token activation counts only above
        ``activated_threshold``. Rows without activations (skipped or not yet encoded) are all zero;
        see :meth:`encoded_mask`.

        >>> ds.latents("mean").shape      # doctest: +SKIP
        (3, 8192)
        """
        check_aggregation(aggregation_method)
        return self._store.latents(aggregation_method, check_threshold(activated_threshold))[self._rows]

    def encoded_mask(self) -> np.ndarray:
        """True for rows that have activations."""
        return self._store.encoded_mask()[self._rows]

    def skipped_rows(self) -> dict[int, str]:
        """Positions (in this view) of rows kept without activations, with the reason."""
        skipped = self._store.skipped
        return {i: skipped[int(r)] for i, r in enumerate(self._rows) if int(r) in skipped}

    def feature_labels(self) -> dict[int, str]:
        """Each feature's newest label: yours (:meth:`set_label`), else an LLM's (:meth:`label_features`), else
        the one shipped with the SAE. :meth:`label_sources` says where each came from."""
        return self._store.feature_labels()

    def describe_feature(self, feature: int, k: int = 5):
        """Everything known of ``feature`` here: its label and where it came from, how often and how strongly it
        fires in this dataset, the words it fires on, its ``k`` strongest documents highlighted, and the summary
        its SAE shipped (:class:`~interp_embed.describe.FeatureDescription`; HTML in a notebook)."""
        from .describe import describe_feature

        return describe_feature(self, feature, k)

    def set_label(self, feature: int, label: str) -> None:
        """Give ``feature`` a label of your own; it is kept in the store and wins over earlier labels."""
        from .store.labels import LabelRecord

        if not isinstance(label, str) or not label.strip():
            raise ValueError("label must be a non-empty string.")
        feature = int(check_features([feature], self.d_sae, "feature")[0])
        self._store.add_label(LabelRecord(feature=feature, label=" ".join(label.split()), source="user"))

    def label_sources(self) -> pd.DataFrame:
        """Where each feature's label came from: one row per labelled feature, with ``feature_id``, ``label``,
        ``source`` (``shipped`` with the SAE, ``llm`` or ``user``), ``model``, ``prompt_version``, ``seed``,
        the label's score when it was scored (``balanced_accuracy``, ``fuzzing``) and ``created``."""
        rows = {f: {"feature_id": f, "label": label, "source": "shipped"} for f, label in self._store.shipped_labels().items()}
        for r in self._store.label_records():  # oldest first: the newest wins
            rows[r.feature] = {"feature_id": r.feature, "label": r.label, "source": r.source, "model": r.model,
                               "prompt_version": r.prompt_version, "seed": r.seed, "created": r.created,
                               **{k: (r.score or {}).get(k) for k in ("balanced_accuracy", "fuzzing")}}
        columns = ["feature_id", "label", "source", "model", "prompt_version", "seed", "balanced_accuracy", "fuzzing",
                   "created"]
        return pd.DataFrame([rows[f] for f in sorted(rows)], columns=columns).astype({"seed": "Int64"})

    # ---- labelling with a language model (see interp_embed.labeling) -----------------------------
    label_feature = _analysis_method(labeling_run.label_feature, "label_feature")
    score_feature = _analysis_method(labeling_run.score_feature, "score_feature")
    label_features = _analysis_method(labeling_run.label_features, "label_features")
    describe_diff = _analysis_method(labeling_run.describe_diff, "describe_diff")

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
        """The words each feature fires on strongly (``top(feature)`` lists them), over the whole store this
        dataset views; search and clustering by query match against them. Computed once per store."""
        return self._store.feature_words()

    def top_documents_for_feature(self, feature: int, aggregation_type: str = "max", k: int = 10,
                                  document_only: bool = True):
        """The ``k`` documents where ``feature`` is strongest, annotated with << >> (or a view if not ``document_only``).

        >>> ds.top_documents_for_feature(feature=4436, k=3)   # doctest: +SKIP
        ['Good afternoon<<.>>', 'Good morning<<!>>', 'Hello there<<!>>']
        """
        order = self._order_by_feature(feature, aggregation_type, include_inactive=False)[:k]
        if not document_only:
            return self._view(order)
        return [self[int(i)].token_activations(feature) for i in order]

    def _order_by_feature(self, feature: int, aggregation_type: str, include_inactive: bool) -> np.ndarray:
        if not 0 <= feature < self.d_sae:
            raise IndexError(f"feature must be in [0, {self.d_sae}), not {feature}")
        column = self.latents(aggregation_type)[:, feature].toarray().ravel()
        order = np.argsort(-column, kind="stable")
        return order if include_inactive else order[column[order] > 0]

    def sort_by_features(self, features: list[int], aggregation_type: str = "max", descending: bool = True,
                         include_nonactive_samples: bool = True) -> "DatasetView":
        """A view sorted by the summed activation of ``features``; inactive rows last (or dropped)."""
        score = np.asarray(self.latents(aggregation_type)[:, list(features)].sum(axis=1)).ravel()
        order = np.argsort(-score if descending else score, kind="stable")
        active = order[score[order] > 0]
        if include_nonactive_samples:
            return self._view(np.r_[active, order[score[order] <= 0]])
        return self._view(active)

    def sort_by_columns(self, columns, descending: bool = True) -> "DatasetView":
        """A view sorted by metadata columns."""
        frame = self.pandas().reset_index(drop=True)
        return self._view(frame.sort_values(by=columns, ascending=not descending, kind="stable").index.to_numpy())

    def filter_na_rows(self) -> "DatasetView":
        """A view without the rows that have no activations."""
        return self._view(np.flatnonzero(self.encoded_mask()))

    # ---- analyses: the functions of interp_embed.analysis with this dataset first ------------------
    diff = _analysis_method(analysis.diff_features, "diff")
    feature_correlations = _analysis_method(analysis.feature_correlations, "feature_correlations")
    top_correlations = _analysis_method(analysis.top_correlations, "top_correlations")
    associate = _analysis_method(analysis.associate_features, "associate")
    cluster = _analysis_method(analysis.cluster_documents, "cluster")
    search = _analysis_method(analysis.search_documents, "search")
    report = _analysis_method(write_report, "report")

    def features_of_text(self, text: str, n_features: int = 5, max_coverage: float = 0.5) -> list[int]:
        """The features most active on ``text`` among those active in this dataset, in at most ``max_coverage``
        of its documents.

        Runs the reader and SAE that encoded the dataset on ``text`` (same template); features firing
        on most documents (punctuation, position) are left out because they say nothing specific, and
        features that never fire here because they cannot find anything.
        """
        self.sae = session.encoder_of(self._store, self.sae)
        doc = session.encode_text(self._store, self.sae, text)
        peak = np.zeros(self.d_sae, dtype=np.float32)
        np.maximum.at(peak, doc.act_features, doc.act_values.astype(np.float32))
        coverage = np.asarray((self.latents("binarize").mean(axis=0))).ravel()
        peak[(coverage > max_coverage) | (coverage == 0)] = 0
        ranked = np.argsort(-peak, kind="stable")[:n_features]
        return [int(f) for f in ranked if peak[f] > 0]

    # ---- table access -----------------------------------------------------------------------------
    def pandas(self) -> pd.DataFrame:
        return self._store.documents().iloc[self._rows]

    def list(self) -> list[dict]:
        return self.pandas().to_dict(orient="records")

    def documents(self) -> list[str]:
        return self.pandas()[self.field].tolist()

    @property
    def columns(self) -> list:
        return self._store.documents().columns.tolist()

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[DatasetRow]:
        return (self[i] for i in range(len(self)))

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            n = len(self._rows)
            if not -n <= index < n:
                raise IndexError(f"row {index} is out of range for a dataset of {n} rows")
            return DatasetRow(self, int(self._rows[index]))
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


def _check_name(name, path: str | Path | None) -> str | None:
    """A dataset's name: ``name`` if given, else the stem of the store's ``path`` (None without one)."""
    if name is None:
        return Path(path).stem if path is not None else None
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}.")
    return name


class DatasetView(Dataset):
    """A ``Dataset`` over rows of a store that already exists: what slicing, masking, sorting and
    :meth:`Dataset.load_from_file` return. It shares the store (nothing is copied) and encodes nothing."""

    def __init__(self, store: Store, rows: np.ndarray, sae: SAE | None = None,
                 name: str | None = None):  # no call to Dataset.__init__: it encodes
        self._store, self._rows, self.sae, self.name = store, np.asarray(rows, dtype=np.int64), sae, name

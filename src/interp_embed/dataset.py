"""The user-facing ``Dataset`` and ``DatasetRow`` (API of the original interp_embed, on a safe store).

A ``Dataset`` is a view — a store on disk plus the positions of the rows it shows — so slicing,
masking and sorting never copy activations. Loading and analysing never imports torch.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .files import TEMPORARY_PREFIX
from .saes.base import SAE
from .store import Store

logger = logging.getLogger(__name__)

Aggregation = Literal["max", "mean", "sum", "binarize", "count"]
AGGREGATIONS = ("max", "mean", "sum", "binarize", "count")
_MAX_LISTED = 20


def _as_frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return pd.DataFrame(data)
    raise TypeError(f"data must be a pandas DataFrame or a list of dicts, not {type(data).__name__}")


def _problem(text) -> str | None:
    """Why a value cannot be encoded, or None if it can."""
    if not isinstance(text, str):
        return "missing (None/NaN)" if text is None or (isinstance(text, float) and np.isnan(text)) else f"not a string ({type(text).__name__})"
    if not text.strip():
        return "empty"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid unicode (lone surrogate)"
    return None


def _highlight(text: str, spans: np.ndarray, active: np.ndarray, left: str, right: str) -> str:
    """The text with each active token's characters wrapped in markers (leading whitespace left outside)."""
    marked = []
    for start, end in spans[active]:
        start, end = int(start), int(end)
        while start < end and text[start].isspace():
            start += 1
        if start < end and (not marked or start >= marked[-1][1]):
            marked.append((start, end))
    out, pos = [], 0
    for start, end in marked:
        out += [text[pos:start], left, text[start:end], right]
        pos = end
    out.append(text[pos:])
    return "".join(out)


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

    def _tokens(self) -> dict:
        tokens = self._store.document(self._row)
        if tokens is None:
            reason = self._store.skipped.get(self._row, "not encoded yet; load with resume=True")
            raise ValueError(f"row {self._row} has no activations: {reason}")
        return tokens

    def tokens(self) -> list[str]:
        """The document's tokens as slices of its text; a character split over two tokens goes to the first."""
        pieces, done = [], 0
        for start, end in self._tokens()["spans"]:
            start = max(int(start), done)
            pieces.append(self.document[start:end] if end > start else "")
            done = max(done, int(end))
        return pieces

    def latents(self, aggregation_method: str = "all") -> sp.csr_matrix:
        """``"all"``: token × feature activations (csr); otherwise the pooled 1 × features row."""
        if aggregation_method != "all":
            return _pooled(self._store, np.array([self._row]), aggregation_method)
        t = self._tokens()
        return sp.csr_matrix((t["act_values"], t["act_features"], t["act_ptr"]), shape=(len(t["spans"]), self._store.d_sae))

    def token_activations(self, feature: int, as_string: bool = True, left_marker: str = "<<", right_marker: str = ">>"):
        """The text with tokens where ``feature`` is active wrapped in markers, or per-token activations.

        >>> ds[0].token_activations(feature=123)     # doctest: +SKIP
        'Good <<morning>>!'
        """
        if not 0 <= feature < self._store.d_sae:
            raise IndexError(f"feature must be in [0, {self._store.d_sae}), not {feature}")
        t = self._tokens()
        column = self.latents("all")[:, feature].toarray().ravel()
        if as_string:
            return _highlight(self.document, t["spans"], column > 0, left_marker, right_marker)
        return [{"token": token, "activation": float(a)} for token, a in zip(self.tokens(), column)]

    def __repr__(self) -> str:
        text = self.document if len(self.document) <= 60 else self.document[:57] + "..."
        return f"DatasetRow({text!r})"


def _pooled(store: Store, rows: np.ndarray, aggregation_method: str, activated_threshold: float = 0.0) -> sp.csr_matrix:
    if aggregation_method not in AGGREGATIONS:
        raise ValueError(f"aggregation_method must be one of {AGGREGATIONS}, not {aggregation_method!r}")
    if aggregation_method in ("max", "sum"):
        return store.pooled_latents(aggregation_method)[rows]
    if aggregation_method == "mean":
        sums = store.pooled_latents("sum")[rows]
        counts = store.document_token_counts()[rows].astype(np.float32)
        return sp.csr_matrix(sp.diags(1.0 / np.maximum(counts, 1), format="csr", dtype=np.float32) @ sums)
    if aggregation_method == "binarize":
        out = store.pooled_latents("max")[rows]
        out.data = (out.data > activated_threshold).astype(np.float32)
        out.eliminate_zeros()
        return out
    if activated_threshold == 0:
        return store.pooled_latents("count")[rows]
    # Counting above a threshold needs the token level: one pass over each row's tokens.
    counted = []
    for row in rows:
        tokens = store.document(int(row))
        if tokens is None:
            counted.append(sp.csr_matrix((1, store.d_sae), dtype=np.float32))
            continue
        keep = tokens["act_values"] > activated_threshold
        counts = np.bincount(tokens["act_features"][keep], minlength=store.d_sae).astype(np.float32)
        counted.append(sp.csr_matrix(counts))
    return sp.vstack(counted, format="csr") if counted else sp.csr_matrix((0, store.d_sae), dtype=np.float32)


class Dataset:
    """A table of documents with the SAE features the reader sees in each.

    Encoding starts at construction and is committed to ``save_path`` chunk by chunk; an interrupted
    run continues with ``Dataset.load_from_file(save_path, resume=True)``. Without ``save_path`` the
    store lives in a temporary folder (see :meth:`save_to_file`).

    Rows whose text is None, NaN, empty or not a string raise an error listing them
    (``on_error="raise"``) or are kept without activations (``on_error="skip"``).

    >>> import pandas as pd
    >>> from interp_embed import Dataset
    >>> df = pd.DataFrame({"text": ["Good morning!", "Hello there!", "Good afternoon."]})
    >>> ds = Dataset(df, save_path="greetings.iembed")           # doctest: +SKIP
    >>> ds.latents().shape                                        # doctest: +SKIP
    (3, 8192)
    """

    def __init__(self, data, sae: SAE | None = None, field: str = "text", save_path: str | Path | None = None,
                 dataset_description: str = "", on_error: Literal["raise", "skip"] = "raise",
                 compute_activations: bool = True, feature_labels: dict[int, str] | None = None,
                 batch_tokens: int = 4096, chunk_chars: int = 100_000, window_tokens: int = 1024,
                 window_overlap: int = 128):
        from .saes import DefaultSAE

        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        frame = _as_frame(data)
        if field not in frame.columns:
            raise KeyError(f"field {field!r} is not a column; available columns: {[str(c) for c in frame.columns]}")
        problems = {row: why for row, text in enumerate(frame[field].tolist()) if (why := _problem(text)) is not None}
        if problems and on_error == "raise":
            listed = ", ".join(f"row {row} (index {frame.index[row]!r}): {why}" for row, why in list(problems.items())[:_MAX_LISTED])
            more = f" and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
            raise ValueError(f"column {field!r} has {len(problems)} value(s) that cannot be encoded: {listed}{more}. "
                             "Fix them, or pass on_error='skip' to keep those rows without activations.")
        self.sae = sae if sae is not None else DefaultSAE()
        self.dataset_description = dataset_description
        from .encode.config import EncodePlan

        plan = EncodePlan(chunk_chars=chunk_chars, batch_tokens=batch_tokens, window_tokens=window_tokens,
                          window_overlap=window_overlap)
        path = Path(save_path) if save_path is not None else Path(tempfile.mkdtemp(prefix="interp_embed-", suffix=".iembed"))
        encoder = self.sae.describe()
        labels = feature_labels if feature_labels is not None else self.sae.feature_labels()
        store = Store.create(path, frame, field, encoder=encoder, d_sae=encoder["sae"]["d_sae"], skipped=problems,
                             labels=labels, plan=plan.to_json())
        self._init_view(store, np.arange(len(frame)), self.sae, dataset_description)
        if compute_activations:
            self._compute()

    # ---- construction helpers --------------------------------------------------------------------
    def _init_view(self, store: Store, rows: np.ndarray, sae: SAE | None, description: str) -> None:
        self._store, self._rows, self.sae, self.dataset_description = store, np.asarray(rows, dtype=np.int64), sae, description

    def _view(self, rows: np.ndarray) -> "Dataset":
        view = object.__new__(Dataset)
        view._init_view(self._store, self._rows[rows], self.sae, self.dataset_description)
        return view

    def _compute(self) -> None:
        from .encode.config import EncodePlan
        from .encode.pipeline import Encoder, encode_pending

        store = self._store
        if store.is_complete():
            return
        recorded = store.body["encoder"]["sae_sha256"]
        if self.sae.fingerprint() != recorded:
            raise ValueError(f"{store.path} was encoded with another SAE (weights sha256 {recorded[:12]}…); "
                             "resume with the same SAE")
        reader, sae_model, sae_device = self.sae.load()
        encoder = Encoder(reader, sae_model, EncodePlan(**store.body["plan"]), sae_device=sae_device)
        try:
            encode_pending(store, encoder, store.documents()[store.field].tolist())
        finally:
            self.sae.destroy()  # as the original: free the models once the work is done

    @classmethod
    def load_from_file(cls, file_path: str | Path, resume: bool = False, sae: SAE | None = None) -> "Dataset":
        """Open a saved dataset (reads only its manifest). ``resume=True`` encodes the rows still missing.

        Loading never unpickles and never imports torch (resuming does, to run the reader).

        >>> ds = Dataset.load_from_file("greetings.iembed")           # doctest: +SKIP
        """
        from .saes import sae_from_spec

        store = Store.open(file_path)
        dataset = object.__new__(cls)
        spec = store.body["encoder"]["spec"]
        dataset._init_view(store, np.arange(store.n_documents), sae, "")
        if resume and not store.is_complete():
            dataset.sae = sae if sae is not None else sae_from_spec(spec)
            dataset._compute()
        elif not store.is_complete():
            logger.warning("%s: %d rows are not encoded yet; load with resume=True to finish",
                           file_path, store.pending_rows().size)
        return dataset

    def save_to_file(self, file_path: str | Path) -> Path:
        """Copy this dataset's store to ``file_path`` (a new folder). Only whole datasets, not views, are saved."""
        if len(self._rows) != self._store.n_documents or not np.array_equal(self._rows, np.arange(self._store.n_documents)):
            raise ValueError("this is a view (a slice, mask or sort) of a dataset; save the dataset it came from")
        target = Path(file_path)
        if target.exists():
            raise FileExistsError(f"{target} exists; choose a new path")
        shutil.copytree(self._store.path, target, ignore=shutil.ignore_patterns(f"{TEMPORARY_PREFIX}*", ".*.tmp-*"))
        return target

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

    def latents(self, aggregation_method: Aggregation = "max", activated_threshold: float = 0.0) -> sp.csr_matrix:
        """Document × feature matrix (scipy.sparse.csr_matrix, float32) pooled over each document's own tokens.

        ``max``/``sum``/``mean`` of activations; ``count`` of tokens where the feature is above
        ``activated_threshold``; ``binarize``: 1 where the max is above it. Rows without activations
        (skipped or not yet encoded) are all zero; see :meth:`encoded_mask`.

        >>> ds.latents("mean").shape      # doctest: +SKIP
        (3, 8192)
        """
        return _pooled(self._store, self._rows, aggregation_method, activated_threshold)

    def encoded_mask(self) -> np.ndarray:
        """True for rows that have activations."""
        return self._store.encoded_mask()[self._rows]

    def skipped_rows(self) -> dict[int, str]:
        """Positions (in this view) of rows kept without activations, with the reason."""
        skipped = self._store.skipped
        return {i: skipped[int(r)] for i, r in enumerate(self._rows) if int(r) in skipped}

    def feature_labels(self) -> dict[int, str]:
        return self._store.feature_labels()

    def top_documents_for_feature(self, feature: int, aggregation_type: Aggregation = "max", k: int = 10,
                                  document_only: bool = True):
        """The ``k`` documents where ``feature`` is strongest, annotated with << >> (or a view if not ``document_only``).

        >>> ds.top_documents_for_feature(feature=123, k=3)   # doctest: +SKIP
        ['Good <<morning>>!', ...]
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

    def sort_by_features(self, features: list[int], aggregation_type: Aggregation = "max", descending: bool = True,
                         include_nonactive_samples: bool = True) -> "Dataset":
        """A view sorted by the summed activation of ``features``; inactive rows last (or dropped)."""
        score = np.asarray(self.latents(aggregation_type)[:, list(features)].sum(axis=1)).ravel()
        order = np.argsort(-score if descending else score, kind="stable")
        active = order[score[order] > 0]
        if include_nonactive_samples:
            return self._view(np.r_[active, order[score[order] <= 0]])
        return self._view(active)

    def sort_by_columns(self, columns, descending: bool = True) -> "Dataset":
        """A view sorted by metadata columns."""
        frame = self.pandas().reset_index(drop=True)
        return self._view(frame.sort_values(by=columns, ascending=not descending, kind="stable").index.to_numpy())

    def filter_na_rows(self) -> "Dataset":
        """A view without the rows that have no activations."""
        return self._view(np.flatnonzero(self.encoded_mask()))

    # ---- analyses (interp_embed.analysis; none of them imports torch) ---------------------------------
    def diff(self, other: "Dataset", **kwargs):
        """Features more frequent here than in ``other``: see :func:`interp_embed.analysis.diff_features`.

        >>> german.diff(english).head(3)[["feature_id", "label", "frequency_difference", "q_value"]]  # doctest: +SKIP
        """
        from .analysis import diff_features

        return diff_features(self, other, **kwargs)

    def feature_correlations(self, **kwargs):
        """Co-occurring feature pairs with NPMI and q-values: see :func:`interp_embed.analysis.feature_correlations`."""
        from .analysis import feature_correlations

        return feature_correlations(self, **kwargs)

    def top_correlations(self, k: int = 20, **kwargs):
        """The ``k`` strongest co-occurring pairs: see :func:`interp_embed.analysis.top_correlations`."""
        from .analysis import top_correlations

        return top_correlations(self, k=k, **kwargs)

    def associate(self, target: str, **kwargs):
        """Features that predict the metadata column ``target``: see :func:`interp_embed.analysis.associate_features`."""
        from .analysis import associate_features

        return associate_features(self, target, **kwargs)

    def cluster(self, features=None, query: str | None = None, n_clusters: int = 8, **kwargs):
        """Clusters along an axis of features: see :func:`interp_embed.analysis.cluster_documents`."""
        from .analysis import cluster_documents

        return cluster_documents(self, features=features, query=query, n_clusters=n_clusters, **kwargs)

    def search(self, query: str | None = None, k: int = 10, by: Literal["labels", "example"] = "labels", **kwargs):
        """Documents with a property, with highlights: see :func:`interp_embed.analysis.search_documents`.

        ``by="labels"`` finds the property's features by matching ``query`` against feature labels;
        ``by="example"`` reads ``query`` as an example text, runs the reader on it and uses the features
        most specific to it (:meth:`features_of_text`), which works even where labels are poor.

        >>> ds.search("German", k=3).highlighted.tolist()                    # doctest: +SKIP
        >>> ds.search("Guten Morgen, wie geht es?", by="example", k=3)       # doctest: +SKIP
        """
        from .analysis import search_documents

        if by not in ("labels", "example"):
            raise ValueError(f"by must be 'labels' or 'example', not {by!r}")
        if by == "example":
            if query is None:
                raise ValueError("by='example' needs query= (an example text)")
            return search_documents(self, features=self.features_of_text(query), k=k, **kwargs)
        return search_documents(self, query=query, k=k, **kwargs)

    def features_of_text(self, text: str, n_features: int = 5, max_coverage: float = 0.5) -> list[int]:
        """The features most active on ``text`` among those active in at most ``max_coverage`` of this dataset.

        Runs the reader and SAE that encoded the dataset on ``text`` (same template); features firing
        on most documents (punctuation, position) are left out because they say nothing specific.
        """
        from .encode.config import EncodePlan
        from .encode.pipeline import Encoder
        from .saes import sae_from_spec

        if _problem(text) is not None:
            raise ValueError(f"text cannot be encoded: {_problem(text)}")
        sae = self.sae if self.sae is not None else sae_from_spec(self._store.body["encoder"]["spec"])
        reader, model, sae_device = sae.load()
        [doc] = Encoder(reader, model, EncodePlan(**self._store.body["plan"]), sae_device).encode_rows([0], [text])
        peak = np.zeros(self.d_sae, dtype=np.float32)
        np.maximum.at(peak, doc.act_features, doc.act_values.astype(np.float32))
        coverage = np.asarray((self.latents("binarize").mean(axis=0))).ravel()
        peak[coverage > max_coverage] = 0
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

"""The bridge from a Dataset to the matrices the analyses work on.

Every analysis reads documents through here so that rows the user skipped (not encoded) are excluded from
every statistic in one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..store.pooling import AGGREGATIONS
from ..validation import Choice, InvalidParameterError, Number, Spec


@runtime_checkable
class EncodedDataset(Protocol):
    """What the analyses read from a dataset. ``interp_embed.Dataset`` and its views have it; so can any
    object with these members (tests use a small stand-in).

    Optional: ``feature_words()`` returning :class:`~interp_embed.store.FeatureWords`, the words each feature
    fires on; search and clustering by query match against them when a dataset has it, else labels alone.
    ``name`` (a string): a diff names its columns after it."""

    d_sae: int
    """Number of SAE features."""

    def latents(self, aggregation_method: str = "max", activated_threshold: float = 0.0) -> sp.csr_matrix:
        """Documents × features pooled activations (rows without activations are all zero)."""

    def encoded_mask(self) -> np.ndarray:
        """True for the rows that have activations."""

    def feature_labels(self) -> dict[int, str]:
        """Feature id → label (may be empty)."""

    def pandas(self) -> pd.DataFrame:
        """The metadata table, one row per document."""

    def __getitem__(self, index):
        """A row with ``token_activations(feature, ...)`` (for highlighted evidence)."""

    def __len__(self) -> int:
        """Number of documents."""


def check_dataset(ds, name: str = "ds") -> EncodedDataset:
    """``ds`` if it is an encoded dataset (see :class:`EncodedDataset`), else a TypeError saying what it lacks."""
    if not isinstance(ds, EncodedDataset):
        missing = [m for m in ("d_sae", "latents", "encoded_mask", "feature_labels", "pandas", "__getitem__",
                               "__len__") if not hasattr(ds, m)]
        raise InvalidParameterError(
            f"{name} must be an interp_embed Dataset (it lacks {', '.join(missing)}); got {type(ds).__name__}. "
            f"Build one with Dataset(data=df, field='text') or open one with Dataset.load_from_file(path)."
        )
    return ds


class Encoded(Spec):
    """An encoded dataset (see :func:`check_dataset`), for :func:`~interp_embed.validation.validate_params`."""

    def check(self, name, value, given):
        return check_dataset(value, name)


PRESENCE = dict(aggregation=Choice(AGGREGATIONS), activated_threshold=Number())
"""What the analyses' ``aggregation`` and ``activated_threshold`` may be: together they decide that a feature is
present in a document (see :func:`presence`)."""


def check_same_encoder(datasets: dict[str, EncodedDataset]) -> None:
    """Refuse to compare datasets that different encoders made (another reader, layer, role or SAE): their
    feature ids mean different things. Datasets that do not record their encoder are compared as they are."""
    recorded = {name: ds.encoder for name, ds in datasets.items() if getattr(ds, "encoder", None) is not None}
    if len(recorded) < 2:
        return
    (first, reference), *others = recorded.items()
    for name, encoder in others:
        differences = reference.differences(encoder.identity())
        if differences:
            raise ValueError(f"{first} and {name} were encoded differently ({'; '.join(differences)}); their features "
                             "cannot be compared. Encode both with the same SAE.")


@dataclass(frozen=True)
class Documents:
    """Pooled activations of the encoded documents of one dataset.

    ``rows`` are positions in the dataset (``ds[rows[i]]`` is the document of matrix row i).
    """

    activations: sp.csr_matrix
    """(n_encoded, d_sae) float32, pooled by the aggregation asked for."""
    rows: np.ndarray

    @property
    def n(self) -> int:
        return self.activations.shape[0]


def load_documents(ds: EncodedDataset, name: str = "ds", aggregation: str = "max") -> Documents:
    """Pooled activations (``aggregation``: max, mean, sum, binarize, count) of the encoded rows of ``ds``;
    raise if none was encoded."""
    mask = np.asarray(ds.encoded_mask(), dtype=bool)
    if not mask.any():
        raise ValueError(f"{name} has no encoded documents; encode it first (the analyses skip rows not encoded).")
    rows = np.flatnonzero(mask)
    X = ds.latents(aggregation_method=aggregation)
    X = sp.csr_matrix(X)
    if X.shape != (len(mask), ds.d_sae):
        raise ValueError(f"{name}.latents() has shape {X.shape}, expected ({len(mask)}, {ds.d_sae}).")
    if rows.size < len(mask):
        X = X[rows]
    return Documents(activations=X, rows=rows)


def presence(X: sp.spmatrix, activated_threshold: float = 0.0) -> sp.csr_matrix:
    """Binary (int32) document × feature matrix: 1 where the pooled activation exceeds the threshold.

    Stored entries are exactly the active pairs, so column counts are a bincount of the indices.
    """
    t = activated_threshold
    X = sp.csr_matrix(X)
    if not X.has_canonical_format:  # duplicate entries would be counted twice; never modify the caller's matrix
        X = X.copy()
        X.sum_duplicates()
    keep = X.data > t
    if keep.all():  # the usual case: the store keeps only positive activations
        indices, indptr = X.indices, X.indptr
    else:
        kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        indices, indptr = X.indices[keep], kept_before[X.indptr]
    return sp.csr_matrix((np.ones(indices.size, dtype=np.int32), indices, indptr), shape=X.shape)


def feature_counts(P: sp.csr_matrix) -> np.ndarray:
    """Number of documents in which each feature is active (P must be a presence matrix)."""
    return np.bincount(P.indices, minlength=P.shape[1]).astype(np.int64)


def label_array(ds: EncodedDataset, d_sae: int | None = None) -> np.ndarray:
    """Feature labels as an object array indexed by feature id, "" where a feature has no label."""
    d = ds.d_sae if d_sae is None else d_sae
    labels = np.full(d, "", dtype=object)
    for f, text in (ds.feature_labels() or {}).items():
        f = int(f)
        if 0 <= f < d and text is not None:
            labels[f] = str(text)
    return labels


def metadata(ds: EncodedDataset, docs: Documents) -> pd.DataFrame:
    """Metadata rows of the encoded documents, in matrix-row order."""
    return ds.pandas().iloc[docs.rows].reset_index(drop=True)

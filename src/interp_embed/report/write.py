"""``write_report``: parameters checked at the door, the data gathered, one HTML file written atomically."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..analysis.inputs import check_dataset
from ..files import write_atomically
from ..validation import (Features, Int, InvalidParameterError, OrNone, Spec, validate_params,
                          with_command_line)
from .collect import collect
from .render import render

MAX_FEATURES = 2000
MAX_DOCUMENTS = 100
MAX_CORRELATED = 50
CLUSTER_COLUMNS = ("cluster", "size", "rank", "feature_id", "label", "freq_in", "freq_out", "lift")


class _Stored(Spec):
    """A dataset saved in a store (see :func:`_check_stored`)."""

    def check(self, name, value, given):
        _check_stored(value, name)
        return value


@validate_params(ds=_Stored(), vs=OrNone(_Stored()), features=Features(), max_features=Int(min=1, max=MAX_FEATURES),
                 top_documents=Int(max=MAX_DOCUMENTS), quantile_documents=Int(max=MAX_DOCUMENTS),
                 correlated=Int(max=MAX_CORRELATED))
def write_report(ds, path, *, vs=None, features=None, max_features: int = 200, top_documents: int = 10,
                 quantile_documents: int = 10, correlated: int = 5, clusters=None, title: str | None = None,
                 title_column: str | None = None) -> Path:
    """Write a self-contained HTML explorer of ``ds``'s features to ``path`` and return its path.

    One file, opened offline in any browser: an overview, a searchable, sortable table of the shown features
    (the words each fires on here, then its label, where the label came from and its scores, frequency, how
    specific it is to this dataset, max activation), a page per feature (activation histogram, ``top_documents``
    strongest documents and ``quantile_documents`` more across its range of activations, as excerpts around
    the strongest token with active tokens shaded by strength, its ``correlated`` most co-occurring shown
    features), with ``vs=other_dataset`` a diff view (differences with their confidence intervals, q-values,
    group sizes, examples from both sides) and with ``clusters=ds.cluster(...)`` the cluster table (every
    feature it links to gets a page).

    The features shown are ``features`` if given; else with ``vs`` the representatives of the ``max_features``
    strongest groups of differences (``diff_features(ds, vs, grouped=True)``, smallest q-values first); else
    the ``max_features`` features most specific to the dataset: those active on more of its tokens, relative
    to the SAE's labelling corpus, than any other (the SAE's ``feature_summaries.json``; without it, the most
    frequent features active in at most half of the documents). Documents are titled by ``title_column``
    (default: a column named title, name, subject or headline, else their first words) with a few other
    columns beside it. Only what is shown is embedded, so a store of any size gives a small file. The report
    is data: document text and labels are escaped, nothing from the store ever runs.

    >>> ds.report("report.html", vs=other)           # doctest: +SKIP
    """
    path = _check_path(path)
    if features is not None and features.size > max_features:
        raise InvalidParameterError(f"features lists {features.size} features, more than max_features={max_features}; pass "
                         f"fewer, or raise max_features (up to {MAX_FEATURES}).")
    _check_clusters(clusters, len(ds))
    if title is None:
        title = f"Features of {ds.name or ds.path.name}"
    elif not isinstance(title, str) or not title.strip():
        raise InvalidParameterError(f"title must be a non-empty string (or None for the default), not {title!r}.")
    _check_title_column(title_column, ds)
    data = collect(ds, vs=vs, features=None if features is None else features.tolist(), max_features=max_features,
                   top_documents=top_documents, quantile_documents=quantile_documents, correlated=correlated,
                   clusters=clusters, title=title, title_column=title_column)
    write_atomically(path, render(data))
    return path


def _check_stored(ds, name: str) -> None:
    """Refuse ``ds`` unless it is a dataset saved in a store, as an ``interp_embed.Dataset`` and its views are: the
    report reads the store's token counts and encoder record as well as what every analysis reads."""
    check_dataset(ds, name)
    missing = [member for member in ("path", "store_rows", "encoder") if not hasattr(ds, member)]
    if missing:
        raise InvalidParameterError(f"{name} must be an interp_embed Dataset saved in a store (it lacks {', '.join(missing)}); "
                        f"got {type(ds).__name__}. Open one with Dataset.load_from_file(path).")


def _check_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidParameterError(f"path must be a file path (str or Path), not {type(path).__name__}.")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path {str(path)!r} is a folder; give the name of the HTML file to write.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder of path {str(path)!r} does not exist; create it first.")
    return path


def _check_title_column(column, ds) -> None:
    if column is None:
        return
    if not isinstance(column, str):
        raise InvalidParameterError(f"title_column must be the name of a column (or None), not {column!r}.")
    columns = [str(c) for c in ds.pandas().columns if c != ds.field]
    if column not in columns:
        problem = f"is not a column of the dataset's table; its columns are {columns}"
        raise with_command_line(InvalidParameterError(f"title_column={column!r} {problem}."), f"--title-column {column} {problem}.")


def _check_clusters(clusters, n_documents: int) -> None:
    """``clusters`` is None or what ``ds.cluster(...)`` returns: ``(assignments, clusters)`` tables of this dataset."""
    if clusters is None:
        return
    if not (isinstance(clusters, tuple) and len(clusters) == 2
            and all(isinstance(t, pd.DataFrame) for t in clusters)):
        raise InvalidParameterError("clusters must be the result of ds.cluster(...) (a Clustering of two tables), or None.")
    assignments, table = clusters
    missing = [c for c in CLUSTER_COLUMNS if c not in table.columns] + [
        c for c in ("document", "cluster") if c not in assignments.columns]
    if missing:
        raise InvalidParameterError(f"clusters lacks the columns {missing}; pass the result of ds.cluster(...) unchanged.")
    documents = assignments["document"]
    if len(assignments) > n_documents or (len(documents) and not documents.between(0, n_documents - 1).all()):
        raise InvalidParameterError(f"clusters assigns documents outside this dataset's {n_documents} rows; pass the result of "
                         "cluster() on the same dataset.")

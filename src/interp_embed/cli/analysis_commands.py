"""The analyses as commands: diff, correlate, associate, cluster, search. Defaults are the Python functions'."""
from __future__ import annotations

import enum
from pathlib import Path

import typer

from . import app
from .common import CSV, JSON, console, default, feature_list, friendly, open_dataset, show
from ..analysis import associate_features, cluster_documents, diff_features, search_documents, top_correlations

ROWS = typer.Option(20, "--rows", min=1, help="Rows shown on the terminal (--csv / --json write them all).")


class Metric(str, enum.Enum):
    absolute = "absolute"
    relative = "relative"


class Method(str, enum.Enum):
    kmeans = "kmeans"
    hdbscan = "hdbscan"


class By(str, enum.Enum):
    labels = "labels"
    example = "example"


@app.command()
@friendly
def diff(store_a: Path = typer.Argument(..., help="A store folder."),
         store_b: Path = typer.Argument(..., help="Another store encoded with the same SAE."),
         metric: Metric = typer.Option(default(diff_features, "metric"), help="Rank by the difference of frequencies "
                                                                              "(absolute) or their ratio (relative)."),
         min_coverage: float = typer.Option(default(diff_features, "min_coverage"),
                                            help="Test only features active in at least this share of both."),
         max_coverage: float = typer.Option(default(diff_features, "max_coverage"),
                                            help="Test only features active in at most this share of either."),
         grouped: bool = typer.Option(default(diff_features, "grouped"),
                                      help="One row per group of features active in the same documents."),
         alpha: float = typer.Option(default(diff_features, "alpha"), help="q-value below which findings are grouped."),
         rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """Which features are active in more documents of STORE_A than of STORE_B (Fisher exact tests, BH q-values)."""
    a, b = open_dataset(store_a), open_dataset(store_b)
    if a.name == b.name:
        a.name, b.name = "a", "b"
    table = diff_features(a, b, metric=metric.value, min_coverage=min_coverage, max_coverage=max_coverage,
                          grouped=grouped, alpha=alpha)
    columns = ["feature_id", "fires_on", "label", f"freq_{a.name}", f"freq_{b.name}", "frequency_difference", "ci_low",
               "ci_high", "q_value", "n_members"]
    show(table, columns, rows, f"features by difference, {store_a} vs {store_b}", csv, json)


@app.command()
@friendly
def correlate(store: Path = typer.Argument(..., help="A store folder."),
              k: int = typer.Option(default(top_correlations, "k"), min=1, help="Pairs to find."),
              min_count: int = typer.Option(default(top_correlations, "min_count"), min=1,
                                            help="Only features active in at least this many documents."),
              max_coverage: float = typer.Option(default(top_correlations, "max_coverage"),
                                                 help="Only features active in at most this share of documents."),
              rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """The feature pairs that co-occur most (NPMI of document presence, one-sided Fisher, BH q-values)."""
    table = top_correlations(open_dataset(store), k=k, min_count=min_count, max_coverage=max_coverage)
    show(table, ["feature_a", "fires_on_a", "label_a", "feature_b", "fires_on_b", "label_b", "count_ab", "npmi",
                 "q_value"], rows,
         f"co-occurring features in {store}", csv, json)


@app.command()
@friendly
def associate(store: Path = typer.Argument(..., help="A store folder."),
              target: str = typer.Option(..., help="A binary or numeric column of the store's table."),
              min_count: int = typer.Option(default(associate_features, "min_count"), min=2,
                                            help="Test only features present (and absent) in this many documents."),
              grouped: bool = typer.Option(default(associate_features, "grouped"),
                                           help="One row per group of features present in the same documents."),
              rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """Which features separate the values of a column (Fisher or rank-sum tests, BH q-values, an L1 model)."""
    table = associate_features(open_dataset(store), target, min_count=min_count, grouped=grouped)
    show(table, ["feature_id", "fires_on", "label", "mean_active", "mean_inactive", "separation", "p_method",
                 "q_value", "selected"], rows, f"features associated with {target!r}", csv, json)
    model = table.attrs["model"]
    console.print(f"sparse model: held-out {model['metric']} {model['held_out']:.3f} (shuffled target: "
                  f"{model['permutation_baseline']:.3f}), {len(model['selected'])} features selected")


@app.command()
@friendly
def cluster(store: Path = typer.Argument(..., help="A store folder."),
            features: str = typer.Option(None, help="The axis: feature ids, e.g. 12,345,678."),
            query: str = typer.Option(None, help="The axis: the features this query matches."),
            n_clusters: int = typer.Option(default(cluster_documents, "n_clusters"), min=1, help="k-means clusters."),
            method: Method = typer.Option(default(cluster_documents, "method"), help="kmeans or hdbscan."),
            rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """Cluster documents along the axis you choose and describe each cluster by its over-represented features."""
    if (features is None) == (query is None):
        raise typer.BadParameter("give exactly one of --features or --query")
    result = cluster_documents(open_dataset(store), features=feature_list(features), query=query,
                               n_clusters=n_clusters, method=method.value)
    show(result.clusters, ["cluster", "size", "feature_id", "label", "freq_in", "freq_out", "lift"], rows,
         f"clusters of {store}", csv, json)


@app.command()
@friendly
def search(store: Path = typer.Argument(..., help="A store folder."),
           query: str = typer.Argument(None, help="Words naming a property, or (with --by example) an example text."),
           features: str = typer.Option(None, help="Instead of QUERY: feature ids, e.g. 12,345."),
           k: int = typer.Option(default(search_documents, "k"), min=1, help="Documents to return."),
           by: By = typer.Option(default(search_documents, "by"), help="labels: match the words features fire on "
                                                                       "and their labels; example: run the models "
                                                                       "on QUERY."),
           rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """The documents that most express a property, with the evidence marked."""
    if (query is None) == (features is None):
        raise typer.BadParameter("give exactly one of QUERY or --features")
    hits = search_documents(open_dataset(store), query, k=k, by=by.value, features=feature_list(features))
    used = hits.attrs["features"]
    console.print("features used: " + "; ".join(f"{int(r.feature_id)} ({r.score:.2f})" for r in used.itertuples()))
    show(hits, ["document", "score", "feature_id", "highlighted"], rows, "documents found", csv, json)

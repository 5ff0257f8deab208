"""The analyses as commands: diff, correlate, associate, cluster, search. Defaults are the Python functions'."""
from __future__ import annotations

import enum
from pathlib import Path

import typer

from . import app
from .common import CSV, JSON, console, default, fail, feature_list, friendly, open_dataset, shorten, show
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
    query = "query"
    example = "example"


class AxisBy(str, enum.Enum):
    labels = "labels"
    query = "query"


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
    show(table, columns, rows, f"features by difference, {store_a} vs {store_b}", csv, json,
         optional=("ci_low", "ci_high"))


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
            query: str = typer.Option(None, help="The axis: comma-separated parts (e.g. 'sports, food, law'), each "
                                                 "contributing the features specific to what it finds."),
            example: list[str] = typer.Option(None, help="The axis: an example text per part (repeat the option)."),
            by: AxisBy = typer.Option(default(cluster_documents, "by"), help="How --query finds its features: labels "
                                                                             "(words they fire on) or query (also "
                                                                             "runs the models)."),
            n_clusters: int = typer.Option(default(cluster_documents, "n_clusters"), min=1, help="k-means clusters."),
            method: Method = typer.Option(default(cluster_documents, "method"), help="kmeans or hdbscan."),
            rows: int = ROWS,
            csv: Path = typer.Option(None, "--csv", help="Write one row per document with its cluster to this CSV "
                                                         "file."),
            json: Path = typer.Option(None, "--json", help="Write the cluster table to this JSON file.")) -> None:
    """Cluster documents along the axis you choose; each cluster with its words, typical documents and features."""
    if sum(x is not None and x != [] for x in (features, query, example)) != 1:
        raise typer.BadParameter("give exactly one of --features, --query or --example")
    ds = open_dataset(store)
    result = cluster_documents(ds, features=feature_list(features), query=query, examples=example or None,
                               by=by.value, n_clusters=n_clusters, method=method.value)
    assignments, clusters = result
    texts = ds.pandas()[ds.field].to_numpy()
    if "axis_table" in clusters.attrs:
        show(clusters.attrs["axis_table"], ["feature_id", "part", "weight", "fires_on", "label"], rows, "the axis",
             None, None)
    for c, group in clusters.groupby("cluster", sort=True):
        first = group.iloc[0]
        console.print(f"\ncluster {c}: {int(first['size'])} documents; words: {first['words'] or '-'}")
        for d in first["examples"]:
            console.print(f"  document {d}: {shorten(str(texts[d]), 110)}")
    show(clusters, ["cluster", "size", "feature_id", "fires_on", "label", "freq_in", "freq_out", "lift"], rows,
         f"clusters of {store}: over-represented features", None, json)
    if csv is not None:
        assignments.assign(text=texts[assignments.document.to_numpy()]).to_csv(csv, index=False)
        console.print(f"{len(assignments)} documents with their cluster written to {csv}")


@app.command()
@friendly
def search(store: Path = typer.Argument(..., help="A store folder."),
           query: str = typer.Argument(None, help="Words naming a property, or (with --by example) an example text."),
           features: str = typer.Option(None, help="Instead of QUERY: feature ids, e.g. 12,345."),
           example: list[str] = typer.Option(None, help="With --by example: an example text (repeat the option)."),
           negative: list[str] = typer.Option(None, help="With --by example: a text the documents should not be "
                                                         "like (repeat the option)."),
           k: int = typer.Option(default(search_documents, "k"), min=1, help="Documents to return."),
           by: By = typer.Option(default(search_documents, "by"), help="labels: match the words features fire on "
                                                                       "and their labels; query: also run the "
                                                                       "models on QUERY; example: run them on the "
                                                                       "examples."),
           rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """The documents that most express a property, with the evidence marked."""
    if by != By.example and (query is None) == (features is None):
        raise typer.BadParameter("give exactly one of QUERY or --features")
    hits = search_documents(open_dataset(store), query, k=k, by=by.value, features=feature_list(features),
                            examples=example or None, negatives=negative or None)
    used = hits.attrs["features"]
    if hits.empty:
        fail(f"no document of {store} has any of the features used active: {', '.join(map(str, used.feature_id))}")
    show(used, ["feature_id", "source", "score", "fires_on", "label"], min(rows, 10), "features used", None, None)
    show(hits, ["document", "score", "feature_id", "fires_on", "highlighted"], rows, "documents found", csv, json)

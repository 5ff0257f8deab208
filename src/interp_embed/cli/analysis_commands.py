"""The analyses as commands: diff, correlate, associate, trend, cluster, search. Defaults are the Python functions'.
``--where`` chooses documents by their metadata (cli/subsets.py)."""
from __future__ import annotations

import enum
from pathlib import Path

import typer

from . import app
from .common import (CSV, JSON, console, default, fail, feature_list, friendly, open_dataset, print_wrapped, shorten,
                     show)
from .subsets import chosen, where_option
from ..analysis import (associate_features, cluster_documents, diff_features, feature_trends, plot_trends,
                        search_documents, top_correlations, where_mask)
from ..analysis.retrieval import BY, BY_WORDS
from ..analysis.trend import level_columns

ROWS = typer.Option(20, "--rows", min=1, help="Rows shown on the terminal (--csv / --json write them all).")


class Metric(str, enum.Enum):
    absolute = "absolute"
    relative = "relative"


class Method(str, enum.Enum):
    kmeans = "kmeans"
    hdbscan = "hdbscan"


# The choices of search_documents' and cluster_documents' ``by``, as they declare them.
By = enum.Enum("By", {b: b for b in BY}, type=str)
AxisBy = enum.Enum("AxisBy", {b: b for b in BY_WORDS}, type=str)


class Grouping(str, enum.Enum):
    explained = "explained"
    overlap = "overlap"


GROUPING = typer.Option(default(diff_features, "grouping"), help="How findings are grouped: explained (a feature "
                                                                 "joins the first whose presence explains its "
                                                                 "difference) or overlap (present in mostly the "
                                                                 "same documents).")


@app.command()
@friendly
def diff(store_a: Path = typer.Argument(..., help="A store folder."),
         store_b: Path = typer.Argument(None, help="Another store encoded with the same SAE; leave it out to compare "
                                                   "the documents of STORE_A that --where chooses with the rest "
                                                   "(or with --where-b)."),
         where: str = where_option("The documents of STORE_A to compare, in pandas query syntax, e.g. \"section == "
                                   "'games'\" (read as data, never run as code)."),
         where_b: str = typer.Option(None, "--where-b", help="The documents to compare them with: of STORE_B when "
                                                             "given, else of STORE_A (default: the rest of STORE_A)."),
         metric: Metric = typer.Option(default(diff_features, "metric"), help="Rank by the difference of frequencies "
                                                                              "(absolute) or their ratio (relative)."),
         min_coverage: float = typer.Option(default(diff_features, "min_coverage"),
                                            help="Test only features active in at least this share of both."),
         max_coverage: float = typer.Option(default(diff_features, "max_coverage"),
                                            help="Test only features active in at most this share of either."),
         grouped: bool = typer.Option(default(diff_features, "grouped"),
                                      help="One row per group of findings with one cause."),
         grouping: Grouping = GROUPING,
         alpha: float = typer.Option(default(diff_features, "alpha"), help="q-value below which findings are grouped."),
         rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """Which features are active in more documents of one side than of the other (Fisher exact tests, BH q-values):
    two stores, or two parts of one store chosen by --where."""
    first = open_dataset(store_a)
    if store_b is None:
        if where is None:
            raise typer.BadParameter("give STORE_B, or --where to compare the documents of STORE_A it chooses with "
                                     "the rest", param_hint="STORE_B")
        a = chosen(first, where)
        b = chosen(first, where_b, "--where-b") if where_b is not None else first[~where_mask(first.pandas(), where)]
        if not len(b):
            raise ValueError(f"every document of {store_a} satisfies --where {where!r}: there is no rest to compare "
                             "with")
        sides = f"{where} vs {where_b or 'the rest'} in {store_a}"
    else:
        second = open_dataset(store_b)
        a, b = chosen(first, where), chosen(second, where_b, "--where-b")
        a.name, b.name = first.name, second.name  # a view chosen by --where keeps its store's name
        sides = f"{store_a} vs {store_b}"
    if a.name is None or a.name == b.name:
        a.name, b.name = "a", "b"
    table = diff_features(a, b, metric=metric.value, min_coverage=min_coverage, max_coverage=max_coverage,
                          grouped=grouped, grouping=grouping.value, alpha=alpha)
    shown = {canonical: name for name, canonical in table.attrs["canonical_columns"].items()}
    columns = ["feature_id", "fires_on", "label", shown["freq_a"], shown["freq_b"], "frequency_difference", "ci_low",
               "ci_high", "q_value", "n_members"]
    show(table, columns, rows, f"features by difference, {sides} ({len(a)} vs {len(b)} documents)", csv, json,
         optional=("ci_low", "ci_high"))


@app.command()
@friendly
def correlate(store: Path = typer.Argument(..., help="A store folder."),
              k: int = typer.Option(default(top_correlations, "k"), min=1, help="Pairs to find."),
              min_count: int = typer.Option(default(top_correlations, "min_count"), min=1,
                                            help="Only features active in at least this many documents."),
              max_coverage: float = typer.Option(default(top_correlations, "max_coverage"),
                                                 help="Only features active in at most this share of documents."),
              where: str = where_option(),
              rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """The feature pairs that co-occur most (NPMI of document presence, one-sided Fisher, BH q-values)."""
    table = top_correlations(chosen(open_dataset(store), where), k=k, min_count=min_count, max_coverage=max_coverage)
    show(table, ["feature_a", "fires_on_a", "label_a", "feature_b", "fires_on_b", "label_b", "count_ab", "npmi",
                 "q_value"], rows,
         f"co-occurring features in {store}", csv, json)
    print_wrapped(table.attrs["excluded_text"] + " (--min-count, --max-coverage)")


@app.command()
@friendly
def associate(store: Path = typer.Argument(..., help="A store folder."),
              target: str = typer.Option(..., help="A column of the store's table: binary, numeric, or categories "
                                                   "(each tested against the rest)."),
              where: str = where_option(),
              min_count: int = typer.Option(default(associate_features, "min_count"), min=2,
                                            help="Test only features present (and absent) in this many documents."),
              grouped: bool = typer.Option(default(associate_features, "grouped"),
                                           help="One row per group of findings with one cause."),
              grouping: Grouping = GROUPING,
              rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """Which features separate the values of a column (Fisher or rank-sum tests, BH q-values, an L1 model)."""
    table = associate_features(chosen(open_dataset(store), where), target, min_count=min_count, grouped=grouped,
                               grouping=grouping.value)
    if "level" in table.columns:  # categories: a summary per level, then the strongest findings of all levels
        show(table.attrs["levels"], ["level", "n_documents", "n_significant", "n_groups", "top_feature", "fires_on",
                                     "held_out_auc", "status"], len(table.attrs["levels"]),
             f"each value of {target!r} against the rest", None, None)
        table = table.sort_values(["p_value", "level"], kind="stable", ignore_index=True)
    show(table, ["level", "feature_id", "fires_on", "label", "mean_active", "mean_inactive", "separation", "p_method",
                 "q_value", "selected", "n_members"], rows, f"features associated with {target!r}", csv, json)
    model = table.attrs["model"]
    if model and "metric" in model:
        console.print(f"sparse model: held-out {model['metric']} {model['held_out']:.3f} (shuffled target: "
                      f"{model['permutation_baseline']:.3f}), {len(model['selected'])} features selected")


@app.command()
@friendly
def trend(store: Path = typer.Argument(..., help="A store folder."),
          column: str = typer.Option(..., help="An ordered column of the store's table: dates, versions, numbers."),
          where: str = where_option(),
          max_levels: int = typer.Option(default(feature_trends, "max_levels"), min=2,
                                         help="Levels shown; more distinct values are cut into this many bins."),
          grouped: bool = typer.Option(default(feature_trends, "grouped"),
                                       help="One row per group of findings with one cause."),
          grouping: Grouping = GROUPING,
          plot: Path = typer.Option(None, help="Draw the strongest trends into this image (.png, .svg, .pdf)."),
          rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """Which features become more or less frequent along an ordered column (rank tests, BH q-values)."""
    table = feature_trends(chosen(open_dataset(store), where), column, max_levels=max_levels, grouped=grouped,
                           grouping=grouping.value)
    levels = table.attrs["levels"]
    frequencies = level_columns(table)
    show(table, ["feature_id", "fires_on", "label", "spearman", "slope", frequencies[0], frequencies[-1], "q_value",
                 "n_members"], rows, f"features by trend along {column!r}", csv, json)
    console.print(f"levels (documents): " + ", ".join(f"{r.level} ({r.n_documents})" for r in levels.itertuples()))
    if plot is not None:
        plot_trends(table, path=plot)
        console.print(f"wrote {plot}")


@app.command()
@friendly
def cluster(store: Path = typer.Argument(..., help="A store folder."),
            features: str = typer.Option(None, help="The axis: feature ids, e.g. 12,345,678."),
            query: str = typer.Option(None, help="The axis: comma-separated parts (e.g. 'sports, food, law'), each "
                                                 "contributing the features specific to what it finds."),
            example: list[str] = typer.Option(None, help="The axis: an example text per part (repeat the option)."),
            by: AxisBy = typer.Option(default(cluster_documents, "by"), help="How --query finds its features: labels "
                                                                             "(words they fire on), query (also runs "
                                                                             "the models) or auto (query where the "
                                                                             "store's models can run)."),
            n_clusters: int = typer.Option(default(cluster_documents, "n_clusters"), min=1, help="k-means clusters."),
            method: Method = typer.Option(default(cluster_documents, "method"), help="kmeans or hdbscan."),
            rows: int = ROWS,
            csv: Path = typer.Option(None, "--csv", help="Write one row per document with its cluster to this CSV "
                                                         "file."),
            json: Path = typer.Option(None, "--json", help="Write the cluster table to this JSON file."),
            where: str = where_option()) -> None:
    """Cluster documents along the axis you choose; each cluster with its words, typical documents and features."""
    if sum(x is not None and x != [] for x in (features, query, example)) != 1:
        raise typer.BadParameter("give exactly one of --features, --query or --example")
    ds = chosen(open_dataset(store), where)
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
           example: list[str] = typer.Option(None, help="An example text (repeat the option): search by example."),
           negative: list[str] = typer.Option(None, help="With --example: a text the documents should not be like "
                                                         "(repeat the option)."),
           k: int = typer.Option(default(search_documents, "k"), min=1, help="Documents to return."),
           by: By = typer.Option(default(search_documents, "by"), help="labels: match the words features fire on "
                                                                       "and their labels; query: also run the "
                                                                       "models on QUERY; example: run them on the "
                                                                       "examples; auto: example with --example, "
                                                                       "else query where the store's models can "
                                                                       "run, else labels."),
           rows: int = ROWS, csv: Path = CSV, json: Path = JSON) -> None:
    """The documents that most express a property, with the evidence marked."""
    if by != By.example and not example and (query is None) == (features is None):
        raise typer.BadParameter("give exactly one of QUERY or --features")
    hits = search_documents(open_dataset(store), query, k=k, by=by.value, features=feature_list(features),
                            examples=example or None, negatives=negative or None)
    used = hits.attrs["features"]
    if hits.empty:
        fail(f"no document of {store} has any of the features used active: {', '.join(map(str, used.feature_id))}")
    show(used, ["feature_id", "source", "score", "fires_on", "label"], min(rows, 10),
         f"features used (by {hits.attrs['by']})", None, None)
    show(hits, ["document", "score", "feature_id", "fires_on", "highlighted"], rows, "documents found", csv, json)

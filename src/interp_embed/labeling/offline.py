"""Offline feature labels from token statistics: no LLM, no network, plain JSON out.

For each feature, over a labelling corpus: the tokens most distinctive of it (activation-weighted token
frequency against the corpus token frequency, scored as ``p(t|f) * log(p(t|f) / p(t))``, the token's
share of the KL divergence between the two distributions, which favours tokens that are both frequent
under the feature and rare elsewhere), and its top-activating contexts with the activating token marked
``<<like this>>``. A label reads ``'Paris', 'France', 'Berlin' — “… the capital <<Paris>> …”``.

Loading the files is ``json.loads``: it can never run code.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..files import FEATURE_LABELS, FEATURE_SUMMARIES, write_atomically


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: each byte is written as one printable character in token strings."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + i): b for i, b in enumerate(shifted)}}


def token_bytes(tokenizer) -> list[bytes]:
    """Each token id's exact UTF-8 bytes, for a byte-level BPE tokenizer (GPT-2, SmolLM2, Llama 3, Qwen ...).

    A character can be split over two tokens, so text is decoded from the tokens' joined bytes, never
    token by token (which turns each half into '\ufffd').
    """
    alphabet = _byte_level_alphabet()
    added = {i: t.content for i, t in tokenizer.added_tokens_decoder.items()}  # stored as plain text
    out = []
    for i, piece in enumerate(tokenizer.convert_ids_to_tokens(range(len(tokenizer)))):
        if i in added:
            out.append(added[i].encode())
        elif all(c in alphabet for c in piece):
            out.append(bytes(alphabet[c] for c in piece))
        else:
            raise ValueError(f"token {i} ({piece!r}) is not byte-level BPE: offline labels need a byte-level tokenizer")
    return out


def _shown(token: str) -> str:
    """A token as a label shows it: trimmed, with invisible ones spelled out."""
    stripped = token.strip()
    return stripped if stripped else repr(token)[1:-1] or "∅"


def _continues(byte: int) -> bool:
    """A UTF-8 continuation byte (10xxxxxx): it belongs to the character started before it."""
    return byte & 0xC0 == 0x80


def _context(doc: np.ndarray, pos: int, pieces: list[bytes], left: int, right: int) -> str:
    before = b"".join(pieces[t] for t in doc[max(0, pos - left) : pos])
    token = pieces[doc[pos]]
    after = b"".join(pieces[t] for t in doc[pos + 1 : pos + 1 + right])
    # A token that is only part of a character is marked with the whole character.
    while before and token and _continues(token[0]):
        before, token = before[:-1], before[-1:] + token
    while after and _continues(after[0]):
        token, after = token + after[:1], after[1:]
    # Now only the window's outer edges can cut a character: drop those bytes. The marked token can still
    # be a fragment where the document itself starts or ends mid-character (long texts are cut into
    # token windows): show its bytes, as '\xe5\x8f', rather than nothing or '\ufffd'.
    marked = token.decode("utf-8", "backslashreplace")
    text = f"{before.decode('utf-8', 'ignore')}<<{marked}>>{after.decode('utf-8', 'ignore')}"
    return " ".join(text.split())  # one line: newlines and runs of spaces collapse


def build_labels(
    docs: list[np.ndarray],
    doc_idx: np.ndarray,
    pos: np.ndarray,
    features: np.ndarray,
    values: np.ndarray,
    pieces: list[bytes],
    d_sae: int,
    n_tokens: int = 3,
    n_contexts: int = 3,
    window: tuple[int, int] = (12, 4),
) -> tuple[dict[str, str], dict[str, dict]]:
    """(labels, summaries) keyed by feature id (as a string, for JSON) for every feature that fired.

    ``doc_idx, pos, features, values`` list every nonzero activation: document, token position, feature, value.
    ``pieces`` are the tokens' bytes (:func:`token_bytes`).
    """
    vocab = len(pieces)
    all_tokens = np.concatenate(docs)
    total = len(all_tokens)
    p_token = (np.bincount(all_tokens, minlength=vocab) + 1.0) / (total + vocab)  # add-one: no zero division
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]])
    tok = all_tokens[starts[doc_idx] + pos]

    n_active = np.bincount(features, minlength=d_sae)
    mass = np.bincount(features, weights=values, minlength=d_sae)
    max_act = np.zeros(d_sae)
    np.maximum.at(max_act, features, values)

    # Activation-weighted token mass per (feature, token), summed over a sorted key.
    key = features.astype(np.int64) * vocab + tok
    uniq, inverse = np.unique(key, return_inverse=True)
    weight = np.bincount(inverse, weights=values)
    count = np.bincount(inverse)
    feat_of = uniq // vocab
    p_tf = weight / mass[feat_of]
    score = p_tf * np.log(p_tf / p_token[uniq % vocab])
    score[count < 2] = -np.inf  # a token seen once under a feature is an anecdote, not a pattern
    by_feature = np.lexsort((-score, feat_of))
    bounds = np.searchsorted(feat_of[by_feature], np.arange(d_sae + 1))

    # Top contexts: strongest activations first, one per document.
    order = np.lexsort((-values, features))
    ctx_bounds = np.searchsorted(features[order], np.arange(d_sae + 1))

    labels, summaries = {}, {}
    for f in np.flatnonzero(n_active):
        entries = by_feature[bounds[f] : bounds[f + 1]]
        entries = entries[np.isfinite(score[entries])] if np.isfinite(score[entries]).any() else entries
        # A token decoded alone: a byte fragment of a character reads '\ufffd' (label_from_summary skips those).
        names = [_shown(pieces[int(uniq[e] % vocab)].decode("utf-8", "replace")) for e in entries[:8]]
        top_tokens = [(name, round(float(score[e]), 4)) for name, e in zip(names, entries[:8])]
        seen = []
        contexts = []
        for e in order[ctx_bounds[f] : ctx_bounds[f + 1]]:
            if doc_idx[e] in seen:
                continue
            seen.append(doc_idx[e])
            contexts.append({"text": _context(docs[doc_idx[e]], int(pos[e]), pieces, *window),
                             "activation": round(float(values[e]), 3)})
            if len(contexts) == n_contexts:
                break
        summaries[str(f)] = {
            "frequency": round(float(n_active[f]) / total, 6),
            "max_activation": round(float(max_act[f]), 3),
            "mean_activation": round(float(mass[f] / n_active[f]), 3),
            "top_tokens": top_tokens,
            "top_contexts": contexts,
        }
        labels[str(f)] = label_from_summary(summaries[str(f)], n_tokens)
    return labels, summaries


def label_from_summary(summary: dict, n_tokens: int = 3) -> str:
    """``'tok', 'tok', 'tok' — “top context”`` from a feature summary's top tokens and first context."""
    names = []
    for name, _ in summary["top_tokens"]:
        # Distinct shown forms (' the' and 'the' read as one word); byte fragments of a character say nothing.
        if name not in names and "\ufffd" not in name:
            names.append(name)
    quoted = ", ".join(f"'{t}'" for t in names[:n_tokens])
    return f"{quoted} — “{summary['top_contexts'][0]['text']}”"


def write_labels(folder: str | Path, labels: dict[str, str], summaries: dict[str, dict], about: dict) -> None:
    """``feature_labels.json`` ({id: label}) and ``feature_summaries.json`` ({"about": ..., "features": {id: ...}})."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    body = {"about": about, "features": summaries}
    write_atomically(folder / FEATURE_SUMMARIES, json.dumps(body, ensure_ascii=False, separators=(",", ":")))
    write_atomically(folder / FEATURE_LABELS, json.dumps(labels, ensure_ascii=False, indent=0))


def load_summaries(folder: str | Path) -> dict[int, dict]:
    """Per-feature summaries (frequency, max/mean activation, top tokens, top contexts) from plain JSON."""
    path = Path(folder) / FEATURE_SUMMARIES
    if not path.is_file():
        return {}
    return {int(k): v for k, v in json.loads(path.read_text("utf-8"))["features"].items()}

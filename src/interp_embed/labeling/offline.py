"""Offline feature labels from token statistics: no LLM, no network, plain JSON out.

For each feature, over a labelling corpus: the whole words it fires in, most distinctive first, and its
top-activating contexts with the activating token marked ``<<like this>>``. A token stands for the word it
lies in (``store.words.WORD``: a maximal run of letters and digits, or one character of Chinese or Japanese,
which are written without spaces), decoded from the tokens' joined bytes, so the sub-word pieces ``w`` +
``arten`` read as ``warten``; a token touching no word (punctuation, spaces) stands for itself. Words are
scored as ``p(w|f) * log(p(w|f) / p(w))`` (activation-weighted word frequency against the corpus word
frequency, per token: the word's share of the KL divergence between the two distributions, which favours
words both frequent under the feature and rare elsewhere; ``store.words.specificity``). When at least
``store.words.TAG_SHARE`` of a feature's
activation mass falls on words of one script other than Latin, or on Latin words in documents of one
language (told by their stop words), the label says so. A label reads
``German words: 'warten', 'Lebens', 'glaube' — “… Netzwerks w<<arten>> systemd-”``, or without the tag
``'Paris', 'France', 'Berlin' — “… the capital <<Paris>> …”``.

Loading the files is ``json.loads``: it can never run code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..architectures.config import sae_file
from ..files import FEATURE_LABELS, FEATURE_SUMMARIES, write_atomically
from ..store.words import (OFFLINE_LABEL, TAG_ID, TAGS, document_language, script_tag, specificity,
                           tag_of_activations, tags_of, touched_words)


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


def token_words(doc: np.ndarray, pieces: list[bytes]) -> tuple[list[str], list[str]]:
    """``(units, words)`` of one document: each token's unit — the whole word(s) it touches (``w|arten`` →
    ``warten``), or, for a token touching no word, its own characters as :func:`_shown` shows them — and the
    document's words, for :func:`document_language`.

    The text is decoded from the tokens' joined bytes, so a character split over two tokens is whole; each
    token covers every character one of its bytes belongs to. A document cut mid-character (a token window
    of a long text) has its stray bytes escaped, and they read '\ufffd' (which labels skip).
    """
    text = b"".join(pieces[t] for t in doc).decode("utf-8", "surrogateescape")
    char_start = np.cumsum([0] + [len(c.encode("utf-8", "surrogateescape")) for c in text[:-1]])
    token_length = np.array([len(pieces[t]) for t in doc], dtype=np.int64)
    token_end = np.cumsum(token_length)
    token_start = token_end - token_length
    start = np.searchsorted(char_start, token_start, side="right") - 1  # the character holding its first byte
    end = np.searchsorted(char_start, token_end, side="left")  # past the character holding its last byte
    found, first, last = touched_words(text, start, end)
    units = [text[found[a].start() : found[b].end()] if a <= b
             else _shown(text[s:e].encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
             for a, b, s, e in zip(first.tolist(), last.tolist(), start.tolist(), end.tolist())]
    return units, [m.group() for m in found]


def build_labels(
    docs: list[np.ndarray],
    doc_idx: np.ndarray,
    pos: np.ndarray,
    features: np.ndarray,
    values: np.ndarray,
    pieces: list[bytes],
    d_sae: int,
    n_words: int = 3,
    n_contexts: int = 3,
    window: tuple[int, int] = (12, 4),
) -> tuple[dict[str, str], dict[str, dict]]:
    """(labels, summaries) keyed by feature id (as a string, for JSON) for every feature that fired.

    ``doc_idx, pos, features, values`` list every nonzero activation: document, token position, feature, value.
    ``pieces`` are the tokens' bytes (:func:`token_bytes`).
    """
    vocabulary: dict[str, int] = {}  # every unit (word, or a token touching none) -> its id
    unit_parts, languages = [], []
    for doc in docs:
        units, words = token_words(doc, pieces)
        unit_parts.append(np.array([vocabulary.setdefault(u, len(vocabulary)) for u in units], dtype=np.int64))
        languages.append(document_language(words))
    names = list(vocabulary)
    all_units = np.concatenate(unit_parts)
    total, n_units = len(all_units), len(names)
    p_unit = (np.bincount(all_units, minlength=n_units) + 1.0) / (total + n_units)  # add-one: no zero division
    starts = np.concatenate([[0], np.cumsum([len(d) for d in docs])[:-1]])
    unit = all_units[starts[doc_idx] + pos]

    n_active = np.bincount(features, minlength=d_sae)
    mass = np.bincount(features, weights=values, minlength=d_sae)
    max_act = np.zeros(d_sae)
    np.maximum.at(max_act, features, values)

    # Activation-weighted unit mass per (feature, unit), summed over a sorted key.
    key = features.astype(np.int64) * n_units + unit
    uniq, inverse = np.unique(key, return_inverse=True)
    weight = np.bincount(inverse, weights=values)
    count = np.bincount(inverse)
    feat_of = uniq // n_units
    score = specificity(weight, mass[feat_of], p_unit[uniq % n_units])
    # A unit seen once under a feature is an anecdote, not a pattern: it ranks after every repeated one.
    by_feature = np.lexsort((-score, count < 2, feat_of))
    bounds = np.searchsorted(feat_of[by_feature], np.arange(d_sae + 1))
    tags = _feature_tags(names, languages, doc_idx, unit, features, values, d_sae)

    # Top contexts: strongest activations first, one per document.
    order = np.lexsort((-values, features))
    ctx_bounds = np.searchsorted(features[order], np.arange(d_sae + 1))

    labels, summaries = {}, {}
    for f in np.flatnonzero(n_active):
        entries = by_feature[bounds[f] : min(bounds[f] + 8, bounds[f + 1])]
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
            "script_or_language": tags[f],
            "top_words": [(names[int(uniq[e] % n_units)], round(float(score[e]), 4)) for e in entries],
            "top_contexts": contexts,
        }
        labels[str(f)] = label_from_summary(summaries[str(f)], n_words)
    return labels, summaries


def _feature_tags(names: list[str], languages: list[str | None], doc_idx: np.ndarray, unit: np.ndarray,
                  features: np.ndarray, values: np.ndarray, d_sae: int) -> list[str | None]:
    """Each feature's script or language (``store.words.tags_of``): an activation counts for the script of its word
    or, on a Latin word, for its document's language (``store.words.document_language``)."""
    word_script = np.array([script_tag(name) for name in names], dtype=np.int64)
    document_tag = np.array([TAG_ID[language] for language in languages], dtype=np.int64)
    tag = tag_of_activations(word_script[unit], document_tag[doc_idx])
    mass = np.bincount(features.astype(np.int64) * len(TAGS) + tag, weights=values, minlength=d_sae * len(TAGS))
    return tags_of(mass.reshape(d_sae, len(TAGS)))


def label_from_summary(summary: dict, n_words: int = 3) -> str:
    """``German words: 'word', 'word', 'word' — “top context”`` (the tag only where the summary has one) from a
    feature summary's top words and first context."""
    names = []
    for name, _ in summary["top_words"]:
        # Distinct words ('The' and 'the' read as one); a stray byte of a cut character says nothing.
        if name.lower() not in (n.lower() for n in names) and "\ufffd" not in name:
            names.append(name)
    quoted = ", ".join(f"'{t}'" for t in names[:n_words])
    tag = f"{summary['script_or_language']} words: " if summary["script_or_language"] else ""
    return f"{tag}{quoted} — “{summary['top_contexts'][0]['text']}”"


def label_words(label: str) -> list[str] | None:
    """The quoted words of an offline label (as :func:`label_from_summary` writes it, tag and excerpt left out), or
    None for a label of another form.

    >>> label_words("German words: 'werden', 'kann', 'können' — “Netzwerks w<<arten>> systemd-”")
    ['werden', 'kann', 'können']
    >>> label_words("'?', 'why' — “Why<<?>>”"), label_words("questions about money") is None
    (['?', 'why'], True)
    """
    found = OFFLINE_LABEL.match(label)
    return found.group(1)[1:-1].split("', '") if found else None


def write_labels(folder: str | Path, labels: dict[str, str], summaries: dict[str, dict], about: dict) -> None:
    """``feature_labels.json`` ({id: label}) and ``feature_summaries.json`` ({"about": ..., "features": {id: ...}})."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    body = {"about": about, "features": summaries}
    write_atomically(folder / FEATURE_SUMMARIES, json.dumps(body, ensure_ascii=False, separators=(",", ":")))
    write_atomically(folder / FEATURE_LABELS, json.dumps(labels, ensure_ascii=False, indent=0))


def load_summaries(folder: str | Path) -> dict[int, dict]:
    """Per-feature summaries (frequency, max/mean activation, script or language, top words, top contexts)
    from plain JSON; a summary whose values are not of those kinds is refused naming the file and the feature."""
    return _read_summaries(folder)[1]


def load_token_frequencies(folder: str | Path, d_sae: int) -> np.ndarray | None:
    """Each feature's share of the tokens of the SAE's labelling corpus (0 where it never fired there), from
    ``feature_summaries.json``; None where there is no such file or it does not say how many tokens it counted."""
    about, features = _read_summaries(folder)
    tokens = about.get("labelling_tokens") if isinstance(about, dict) else None
    if not features or not isinstance(tokens, int) or tokens <= 0:
        return None
    share = np.zeros(d_sae)
    for feature, summary in features.items():
        value = summary.get("frequency")
        if 0 <= feature < d_sae and isinstance(value, (int, float)) and 0 <= value <= 1:
            share[feature] = value
    return share


def _read_summaries(folder: str | Path) -> tuple[dict, dict[int, dict]]:
    """``(about, features)`` of a summaries file, each feature's summary checked; ``({}, {})`` where there is
    none."""
    path = Path(folder) / FEATURE_SUMMARIES
    if not os.path.lexists(path):
        return {}, {}
    sae_file(path)
    try:
        body = json.loads(path.read_text("utf-8"))
        summaries = {int(k): v for k, v in body["features"].items() if isinstance(v, dict)}
        about = body.get("about") or {}
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError, ValueError,
            AttributeError) as err:
        raise ValueError(f"{path}: not a feature summaries file ({type(err).__name__}: {err})") from err
    for feature, summary in summaries.items():
        problem = _summary_problem(summary)
        if problem:
            raise ValueError(f"{path}: feature {feature}'s summary has {problem}; not a feature summaries file")
    return about, summaries


def _summary_problem(summary: dict) -> str | None:
    """What is wrong with one feature's summary (its shown values are read as numbers, text and word lists)."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def weighted_words(value) -> bool:
        return isinstance(value, list) and all(isinstance(w, list) and len(w) == 2 and isinstance(w[0], str)
                                               and number(w[1]) for w in value)

    def contexts(value) -> bool:
        return isinstance(value, list) and all(isinstance(c, dict) and isinstance(c.get("text"), str)
                                               and number(c.get("activation", 0)) for c in value)

    kinds = {"frequency": (number, "a number"), "max_activation": (number, "a number"),
             "mean_activation": (number, "a number"),
             "script_or_language": (lambda v: v is None or isinstance(v, str), "text or null"),
             "top_words": (weighted_words, "a list of [word, weight] pairs"),
             "top_tokens": (weighted_words, "a list of [token, weight] pairs"),
             "top_contexts": (contexts, 'a list of {"text": ..., "activation": ...} objects')}
    for key, (fits, kind) in kinds.items():
        if key in summary and not fits(summary[key]):
            return f"{key} = {json.dumps(summary[key])[:60]}, not {kind}"
    return None

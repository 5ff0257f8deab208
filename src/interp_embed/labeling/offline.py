"""Offline feature labels from token statistics: no LLM, no network, plain JSON out.

For each feature, over a labelling corpus: the whole words it fires in, most distinctive first, and its
top-activating contexts with the activating token marked ``<<like this>>``. A token stands for the word it
lies in (``store.words.WORD``: a maximal run of letters and digits, or one character of Chinese or Japanese,
which are written without spaces), decoded from the tokens' joined bytes, so the sub-word pieces ``w`` +
``arten`` read as ``warten``; a token touching no word (punctuation, spaces) stands for itself. Words are
scored as ``p(w|f) * log(p(w|f) / p(w))`` (activation-weighted word frequency against the corpus word
frequency, per token: the word's share of the KL divergence between the two distributions, which favours
words both frequent under the feature and rare elsewhere). When at least :data:`TAG_SHARE` of a feature's
activation mass falls on words of one script other than Latin, or on Latin words in documents of one
language (told by their stop words), the label says so. A label reads
``German words: 'warten', 'Lebens', 'glaube' — “… Netzwerks w<<arten>> systemd-”``, or without the tag
``'Paris', 'France', 'Berlin' — “… the capital <<Paris>> …”``.

Loading the files is ``json.loads``: it can never run code.
"""
from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import numpy as np

from ..architectures.config import sae_file
from ..files import FEATURE_LABELS, FEATURE_SUMMARIES, write_atomically
from ..store.words import touched_words

TAG_SHARE = 0.8  # a label names a script or language only when this share of the feature's activations is in it
# Frequent function words, each counted for one language. Those several languages use alike ("de", "la", "que",
# "in", "a") are left out; a few shared ones count for the language using them most ("del", "una": Spanish).
STOP_WORDS = {
    "English": "the of to that this are be by which was were have has been you your can will would there their "
               "they should when these also only must",
    "German": "der die das und ist nicht mit den dem zu von sich auf für eine ein einer eines werden wird auch "
              "oder wenn kann sie im bei sind nur noch aus wie durch",
    "Spanish": "el los las y es pero más puede cuando también hay muy está son sin lo sus al usted hasta donde "
               "según porque del por como una",
    "French": "le les des est et une du dans pour pas sur qui ce au avec sont ne être cette par plus aux peut "
              "vous nous",
    "Italian": "di che è della delle dei degli gli il per non sono nel nella alla questo questa essere anche più "
               "può ed",
    "Portuguese": "os não em um uma é ao na mais pelo pela seu sua você são também isso pode",
}
LANGUAGE_OF_STOP_WORD = {w: language for language, words in STOP_WORDS.items() for w in words.split()}
MIN_STOP_WORDS = 8  # a document shorter in stop words has no detected language
MIN_STOP_SHARE = 0.08  # of all its words: prose reaches this, code and tables seldom do
STOP_MARGIN = 3  # the language's stop words must outnumber any other language's this many times
SCRIPTS = {  # the first word of a letter's Unicode name: the script a label names
    "LATIN": "Latin", "CYRILLIC": "Cyrillic", "GREEK": "Greek", "CJK": "CJK", "HIRAGANA": "Japanese",
    "KATAKANA": "Japanese", "HANGUL": "Korean", "ARABIC": "Arabic", "HEBREW": "Hebrew", "DEVANAGARI": "Devanagari",
    "THAI": "Thai", "ARMENIAN": "Armenian", "GEORGIAN": "Georgian", "BENGALI": "Bengali", "TAMIL": "Tamil",
}


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


def document_language(words: list[str]) -> str | None:
    """The language of a Latin-script document told by its stop words (:data:`STOP_WORDS`), or None unless the
    evidence is strong: at least :data:`MIN_STOP_WORDS` of one language's, :data:`MIN_STOP_SHARE` of all words,
    and :data:`STOP_MARGIN` times any other language's.

    >>> document_language("Ich glaube, daß der Sinn des Lebens darin besteht, glücklich zu sein, und wenn man "
    ...                   "es nicht ist, dann ist das auch nicht schlimm, sagt sie mit einer".split())
    'German'
    >>> document_language("def main(args): return args.the_value if args else None".split()) is None
    True
    """
    counts = dict.fromkeys(STOP_WORDS, 0)
    for word in words:
        language = LANGUAGE_OF_STOP_WORD.get(word.lower())
        if language:
            counts[language] += 1
    best, runner_up = sorted(counts.values(), reverse=True)[:2]
    if best >= MIN_STOP_WORDS and best >= MIN_STOP_SHARE * len(words) and best >= STOP_MARGIN * runner_up:
        return max(counts, key=counts.get)
    return None


def script(word: str) -> str | None:
    """The script of a word's first letter as a label names it (:data:`SCRIPTS`), or None: no letter, or a
    script not listed.

    >>> [script(w) for w in ["Lebens", "жизнь", "內核", "λόγος", "2013", ","]]
    ['Latin', 'Cyrillic', 'CJK', 'Greek', None, None]
    """
    letter = next((c for c in word if c.isalpha()), "")
    return SCRIPTS.get(unicodedata.name(letter, " ").split(" ")[0]) if letter else None


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
    p_uf = weight / mass[feat_of]
    score = p_uf * np.log(p_uf / p_unit[uniq % n_units])
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
    """Each feature's script or language, where at least :data:`TAG_SHARE` of its activation mass lies in one.

    An activation counts for the script of its word (:func:`script`) or, on a Latin word, for its document's
    language (:func:`document_language`); on a word of no listed script, punctuation or spaces, or a Latin word
    in a document of no clear language, it counts for nothing, and so against any tag.
    """
    tag_names = [None, *dict.fromkeys(t for t in (*SCRIPTS.values(), *STOP_WORDS) if t != "Latin")]
    tag_id = {name: i for i, name in enumerate(tag_names)}
    latin = -1  # a Latin word: its document's language decides
    unit_tag = np.array([latin if s == "Latin" else tag_id[s] for s in map(script, names)], dtype=np.int64)
    document_tag = np.array([tag_id[language] for language in languages], dtype=np.int64)
    activation_tag = unit_tag[unit]
    activation_tag = np.where(activation_tag == latin, document_tag[doc_idx], activation_tag)
    mass = np.bincount(features.astype(np.int64) * len(tag_names) + activation_tag, weights=values,
                       minlength=d_sae * len(tag_names)).reshape(d_sae, len(tag_names))
    share = mass / np.maximum(mass.sum(axis=1, keepdims=True), 1e-30)
    best = share[:, 1:].argmax(axis=1) + 1
    return [tag_names[b] if share[f, b] >= TAG_SHARE else None for f, b in enumerate(best.tolist())]


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
    path = Path(folder) / FEATURE_SUMMARIES
    if not os.path.lexists(path):
        return {}
    sae_file(path)
    try:
        features = json.loads(path.read_text("utf-8"))["features"]
        summaries = {int(k): v for k, v in features.items() if isinstance(v, dict)}
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError, ValueError,
            AttributeError) as err:
        raise ValueError(f"{path}: not a feature summaries file ({type(err).__name__}: {err})") from err
    for feature, summary in summaries.items():
        problem = _summary_problem(summary)
        if problem:
            raise ValueError(f"{path}: feature {feature}'s summary has {problem}; not a feature summaries file")
    return summaries


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

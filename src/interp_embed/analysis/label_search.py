"""Finding features by what they do: a query's words matched to the words features fire on and to their labels.

A feature is described by two bags of words:

- the words under its strongest activations in the dataset (``FeatureWords``, from the store's token level),
  weighted by activation: what the feature does on this very text;
- its label: for an offline label (``'good', 'best', 'better' — “… example …”``, perhaps tagged with a script or
  language: ``German words: 'warten', … — “…”``) the quoted top words only, never the tag (the feature fires in
  German, it is not about German) nor the example sentence, whose other words say nothing about the feature; a
  written (LLM) label whole.

Words are lower-cased and stemmed (:func:`stem`); a symbol or number a feature fires on stands for what Unicode
calls its characters (:func:`word_terms`: "!" is an exclamation mark, "1984" a decimal number). A query's English
stop words are dropped, but a feature's stay in its bag, where they dilute the rest (a feature firing on "the" and
once on "game" is no game feature).
Each bag is a TF-IDF vector over the candidate features, and the query's cosine with each is a match in [0, 1].
A feature matches if what it fires on matches or its label does, best if both: its score is
``1 − (1 − fired) · (1 − weight · label)``, where a written label weighs 1 and an offline label's tokens 0.5 (they
come from another corpus; where they apply here, the fired words show them too). Only features that fire in the
dataset are candidates.
"""
from __future__ import annotations

import functools
import logging
import re
import unicodedata

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..store.words import OFFLINE_LABEL, WORD, FeatureWords
from .fires_on import fires_on_text, words_of
from .inputs import Documents, EncodedDataset, label_array
from ..validation import BY_EXAMPLE, BY_QUERY, EXAMPLES, FEATURE_IDS, explained

logger = logging.getLogger(__name__)

WRITTEN_LABEL_WEIGHT = 1.0
OFFLINE_LABEL_WEIGHT = 0.5  # an offline label matching alone scores at most this
PLURALS = (("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh"), ("s", ""))
ENDINGS = (("ically", "ic"), ("ical", "ic"), ("ation", ""), ("ing", ""), ("ed", ""), ("er", ""), ("or", ""),
           ("ly", ""), ("al", ""))


# The long names of the Unicode general categories (the Unicode Character Database's PropertyValueAliases.txt).
CATEGORY_NAMES = {
    "Lu": "uppercase letter", "Ll": "lowercase letter", "Lt": "titlecase letter", "Lm": "modifier letter",
    "Lo": "other letter", "Mn": "nonspacing mark", "Mc": "spacing mark", "Me": "enclosing mark",
    "Nd": "decimal number", "Nl": "letter number", "No": "other number", "Pc": "connector punctuation",
    "Pd": "dash punctuation", "Ps": "open punctuation", "Pe": "close punctuation", "Pi": "initial punctuation",
    "Pf": "final punctuation", "Po": "other punctuation", "Sm": "math symbol", "Sc": "currency symbol",
    "Sk": "modifier symbol", "So": "other symbol", "Zs": "space separator", "Zl": "line separator",
    "Zp": "paragraph separator", "Cc": "control", "Cf": "format", "Cs": "surrogate", "Co": "private use",
    "Cn": "unassigned",
}


@functools.cache
def word_terms(word: str) -> tuple[str, ...]:
    """The terms a word a feature fires on is matched by: its stem; for a word without letters (a symbol, a
    number) the stemmed words of what Unicode calls its characters instead — each one's name and general category,
    a digit by its category only (its name spells the digit) — so that a query for "exclamations" meets a feature
    firing on "!" (EXCLAMATION MARK) and one for "numbers" a feature firing on "1984" (decimal number).

    >>> word_terms("games"), word_terms("!"), word_terms("1984")
    (('gam',), ('exclam', 'mark', 'punctu'), ('decim', 'numb'))
    """
    if any(c.isalpha() for c in word):
        return (stem(word),)
    names = []
    for c in word:
        category = unicodedata.category(c)
        if category != "Nd":  # a digit's name spells it out ("DIGIT SEVEN"): its category says what it is
            names.append(unicodedata.name(c, ""))
        names.append(CATEGORY_NAMES.get(category, ""))
    terms = [stem(w) for w in re.findall(r"[a-z]+", " ".join(names).lower()) if w not in stop_words()]
    return tuple(dict.fromkeys(terms)) or (word,)


def stem(word: str) -> str:
    """A light English stemmer: a plural ending, then one of -ing -ed -er -or -ly -al -ation (-ical → -ic), then
    a final e, each only where three letters remain. Enough to meet a query's "games" with a text's "game",
    "gaming" and "gamer", or "mathematics" with "mathematical"; words of other languages mostly pass unchanged.

    >>> [stem(w) for w in ["games", "gaming", "fonts", "libraries", "editor", "editing", "mathematics", "mathematical", "class"]]
    ['gam', 'gam', 'font', 'library', 'edit', 'edit', 'mathematic', 'mathematic', 'class']
    """
    word = word.lower()
    for ending, replacement in PLURALS:
        if (word.endswith(ending) and not word.endswith(("ss", "us", "is"))
                and len(word) - len(ending) + len(replacement) >= 3):
            word = word[: len(word) - len(ending)] + replacement
            break
    for ending, replacement in ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            word = word[: len(word) - len(ending)] + replacement
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


@functools.cache
def stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # imported where used: importing interp_embed stays fast

    return ENGLISH_STOP_WORDS


def query_terms(query: str) -> list[str]:
    """The stemmed words of ``query`` that can carry meaning (English stop words dropped).

    >>> query_terms("The games of the year")
    ['gam', 'year']
    """
    return [stem(w) for w in WORD.findall(query.lower()) if w not in stop_words()]


def label_terms(label: str) -> tuple[list[str], float]:
    """The terms a label contributes and their weight: an offline label's top words (weight 0.5), or every
    word of a written label (weight 1).

    >>> label_terms("'good', 'best', 'better' — “no es muy bu<<ena>> todavía”")
    (['good', 'best', 'bett'], 0.5)
    >>> label_terms("German words: 'warten', 'Lebens' — “des Netzwerks w<<arten>> systemd-”")
    (['warten', 'leben'], 0.5)
    """
    offline = OFFLINE_LABEL.match(label)
    words = WORD.findall((offline.group(1) if offline else label).lower())
    return [stem(w) for w in words], OFFLINE_LABEL_WEIGHT if offline else WRITTEN_LABEL_WEIGHT


def _cosines(bags: sp.csr_matrix, candidates: np.ndarray, query: list[int]) -> np.ndarray:
    """Cosine of the query's terms with each candidate's bag (rows: term weights), both as TF-IDF vectors; the
    IDF is sklearn's smooth one over the candidates, so a word many features fire on counts little."""
    from sklearn.preprocessing import normalize

    rows = normalize(bags[candidates], norm="l1")  # term shares: how much of the feature is each term
    frequency = np.bincount(rows.indices, minlength=bags.shape[1])
    idf = np.log((1 + len(candidates)) / (1 + frequency)) + 1
    q = np.bincount(query, minlength=bags.shape[1]) * idf
    return normalize(rows.multiply(idf).tocsr()) @ (q / np.linalg.norm(q))


def match_features(labels: np.ndarray, query: str, k: int = 10, min_score: float = 0.2,
                   words: FeatureWords | None = None, candidates: np.ndarray | None = None) -> pd.DataFrame:
    """The features that best match ``query`` by what they do: their fired ``words`` and their ``labels``.

    ``labels`` (object array indexed by feature id, "" for none) and ``words`` (None when the dataset cannot
    tell, then labels alone count) describe the features as the module says; ``candidates`` (feature ids,
    default all) are those that may match — the features active in the dataset. Returns ``feature_id``,
    ``label``, ``score`` (in [0, 1]) and ``fires_on`` (as every feature table shows it) for at most ``k`` features scoring
    at least ``min_score``, best first; raises ValueError saying so when none does.

    >>> labels = np.array(["German words", "code", "german compound nouns", ""], dtype=object)
    >>> match_features(labels, "German", k=2)["feature_id"].tolist()
    [0, 2]
    """
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query must be a non-empty string describing the property, e.g. query='German'.")
    d_sae = len(labels)
    candidates = np.arange(d_sae) if candidates is None else np.asarray(candidates, dtype=np.int64)
    vocabulary: dict[str, int] = {}
    label_rows, label_terms_ids, label_weight = [], [], np.zeros(d_sae)
    for f in candidates:
        found, weight = label_terms(str(labels[f]))
        label_rows += [f] * len(found)
        label_terms_ids += [vocabulary.setdefault(t, len(vocabulary)) for t in found]
        label_weight[f] = weight if found else 0.0
    if words is not None:  # each fired word's mass goes to its terms' columns, shared among them
        described = [word_terms(w) for w in words.words]
        n_terms_of = np.array([len(t) for t in described])
        term_word = np.repeat(np.arange(len(described)), n_terms_of)
        term_ids = np.array([vocabulary.setdefault(t, len(vocabulary)) for ts in described for t in ts],
                            dtype=np.int64)
    query_ids = [vocabulary[t] for t in query_terms(query) if t in vocabulary]
    if not query_terms(query):
        raise explained(ValueError, f"query {query!r} has only stop words, which say nothing about a feature by its "
                        "words; search ", BY_QUERY, " reads it through the model (negation, 'not', 'never' included), "
                        "or search by examples (", EXAMPLES, ").")
    if not query_ids:
        source = "the words this dataset's features fire on or their labels" if words is not None else "any feature label"
        raise explained(ValueError, f"no word of query {query!r} occurs in {source}; try other words, search by an "
                        "example text (", BY_EXAMPLE, "), or pass feature ids with ", FEATURE_IDS, ".")
    n_terms = len(vocabulary)
    bags = sp.csr_matrix((np.ones(len(label_rows)), (label_rows, label_terms_ids)), shape=(d_sae, n_terms))
    score = _cosines(bags, candidates, query_ids)
    if words is not None:
        to_stem = sp.csr_matrix((1 / n_terms_of[term_word], (term_word, term_ids)), shape=(len(described), n_terms))
        fired = _cosines((words.mass @ to_stem).tocsr(), candidates, query_ids)
        score = 1 - (1 - fired) * (1 - label_weight[candidates] * score)
    order = np.argsort(-score, kind="stable")[:k]
    good = order[score[order] >= min_score]
    if good.size == 0:
        best = int(candidates[order[0]])
        raise explained(ValueError, f"no feature matches {query!r} well enough (the best, feature {best}, scores "
                        f"{score[order[0]]:.2f} < min_score={min_score}); try other words, search by an example "
                        "text (", BY_EXAMPLE, "), or pass feature ids with ", FEATURE_IDS, ".")
    f = candidates[good]
    fired = fires_on_text(words if words is not None else "", f)  # as every other table shows them
    return pd.DataFrame({"feature_id": f, "label": labels[f], "score": score[good], "fires_on": fired})


def dataset_words(ds: EncodedDataset) -> FeatureWords | None:
    """The words ``ds``'s features fire on (``ds.feature_words()``), or None where it cannot tell: no such method,
    or a store that keeps pooled activations only."""
    words = words_of(ds)
    return None if isinstance(words, str) else words


def query_features(ds: EncodedDataset, docs: Documents, query: str, k: int) -> pd.DataFrame:
    """:func:`match_features` for a dataset: its labels, the words its features fire on when it can tell
    (``ds.feature_words()``; otherwise labels alone), and as candidates the features active in ``docs``, its
    encoded documents — a feature that never fires here cannot find anything."""
    words = dataset_words(ds)
    if words is None and hasattr(ds, "feature_words"):
        logger.warning("this dataset's store keeps pooled activations only (EncodePlan(token_level=False)), so the "
                       "query is matched against feature labels alone, not the words features fire on")
    active = np.flatnonzero(docs.activations.getnnz(axis=0) > 0)
    return match_features(label_array(ds), query, k=k, words=words, candidates=active)

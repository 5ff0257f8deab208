"""What each feature fires on, in words: the words under its strong token activations in a set of documents.

A feature's label may have been written from another corpus; these words show what it does on the documents being
analysed. A token stands for the whole word it lies in (the token ``ena`` of ``buena`` gives "buena"), lower-cased; a
token that touches no word stands for its own characters (``?``, ``;``), and whitespace for nothing. Only
activations of at least :data:`STRONG` times the feature's largest activation in those documents count: a feature's
weak activations are its noise, not what it stands for.

Words are ranked by how *specific* they are to the feature, not by how often it fires on them: a word's score is
``p(w|f) · log(p(w|f) / p(w))`` — its share of the feature's strong activation mass against its share of all tokens
of the documents (the word's part of the KL divergence between the two; the offline labeller ranks the words of an
SAE's labelling corpus the same way). A feature that fires on "game" in a corpus where "game" is rare is a game
feature; one that fires on "the" as often as "the" occurs says nothing about "the".

The words of each chunk are read once per store object (:class:`WordIndex`); the statistics of any set of rows are
then one vectorised pass over their tokens.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .chunk import Chunk
from .errors import StoreCorruptError

STRONG = 0.5
# Chinese and Japanese are written without spaces: there, each ideograph or kana is a word of its own (else a
# whole clause would be one). Elsewhere a word is a maximal run of letters and digits.
UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
WORD = re.compile(rf"[^\W{UNSPACED}]+|[{UNSPACED}]")
MAX_SYMBOL = 8  # a token that touches no word stands for its characters, up to this many (longer: a layout run)

# ---- the script or language of words ---------------------------------------------------------------------------
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
TAGS = (None, *dict.fromkeys(t for t in (*SCRIPTS.values(), *STOP_WORDS) if t != "Latin"))
"""What a feature can be tagged with: nothing, a script other than Latin, or a language written in Latin."""
TAG_ID = {tag: i for i, tag in enumerate(TAGS)}

OFFLINE_LABEL = re.compile(r"^(?:\w+ words: )?('.*') — “.*”$", re.DOTALL)
"""A label written from words (labeling/offline.py): perhaps a script or language tag (``German words: ``), the
quoted words, then an excerpt around the strongest activation."""


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


LATIN = -1  # the script tag of a Latin word: its document's language decides


def tag_of_activations(word_script: np.ndarray, document_tag: np.ndarray) -> np.ndarray:
    """The tag id (:data:`TAGS`) each activation counts for: its word's script, or on a Latin word its document's
    language; on a word of no listed script, punctuation, or a Latin word in a document of no clear language, 0
    (nothing, which counts against any tag). ``word_script`` holds each activation's word's script tag id, -1 for
    Latin."""
    return np.where(word_script == LATIN, document_tag, word_script)


def script_tag(word: str) -> int:
    """:func:`script` as a tag id: -1 for Latin (the document's language decides), 0 for none."""
    found = script(word)
    return LATIN if found == "Latin" else TAG_ID.get(found, 0)


def tags_of(tag_mass: np.ndarray) -> list[str | None]:
    """Each feature's tag from its activation mass per tag id (features × :data:`TAGS`): the script or language
    holding at least :data:`TAG_SHARE` of it, else None."""
    share = tag_mass / np.maximum(tag_mass.sum(axis=1, keepdims=True), 1e-30)
    best = share[:, 1:].argmax(axis=1) + 1
    return [TAGS[b] if share[f, b] >= TAG_SHARE else None for f, b in enumerate(best.tolist())]


# ---- how specific a word is to a feature ------------------------------------------------------------------------
def specificity(mass: np.ndarray, feature_mass: np.ndarray, word_share: np.ndarray) -> np.ndarray:
    """``p(w|f) · log(p(w|f) / p(w))`` for entries of (feature, word) activation ``mass``, each feature's whole
    ``feature_mass`` and each word's share ``p(w)`` of all tokens (smoothed: never 0)."""
    p_word_given_feature = mass / feature_mass
    return p_word_given_feature * np.log(p_word_given_feature / word_share)


def touched_words(text: str, start: np.ndarray, end: np.ndarray) -> tuple[list[re.Match], np.ndarray, np.ndarray]:
    """The words of ``text`` and, for each character span ``[start, end)`` (a token), the index of the first
    and of the last word it touches; ``first > last`` where it touches none (punctuation, spaces). Vectorised:
    one regex pass, two binary searches."""
    found = list(WORD.finditer(text))
    word_start = np.array([m.start() for m in found], dtype=np.int64)
    word_end = np.array([m.end() for m in found], dtype=np.int64)
    first = np.searchsorted(word_end, start, side="right")  # the first word ending after the span starts
    last = np.searchsorted(word_start, end, side="left") - 1  # the last word starting before the span ends
    return found, first, last


@dataclass(frozen=True)
class ChunkWords:
    """The words of one chunk's encoded documents, read once per store object."""

    token_word: np.ndarray
    """(tokens,) the id (in the store's :class:`WordIndex`) of what each token stands for, -1 for whitespace."""
    document_tag: np.ndarray
    """(documents,) each document's language as a tag id (:data:`TAGS`), 0 where none is clear."""


class WordIndex:
    """The vocabulary of a store's documents and each chunk's :class:`ChunkWords`, built as chunks are first read."""

    def __init__(self):
        self.vocabulary: dict[str, int] = {}
        self._scripts: list[int] = []
        self._chunks: dict[str, ChunkWords] = {}

    @property
    def words(self) -> np.ndarray:
        return np.array(list(self.vocabulary), dtype=object)

    @property
    def word_script(self) -> np.ndarray:
        """Each word's script tag id (:func:`script_tag`)."""
        return np.array(self._scripts, dtype=np.int64)

    def _id(self, word: str) -> int:
        found = self.vocabulary.get(word)
        if found is None:
            found = self.vocabulary[word] = len(self.vocabulary)
            self._scripts.append(script_tag(word))
        return found

    def chunk(self, chunk: Chunk, texts: list) -> ChunkWords:
        """The words of ``chunk``, whose rows' texts are ``texts`` (one per row of the chunk's range)."""
        name = chunk.entry.name
        if name not in self._chunks:
            self._chunks[name] = self._read(chunk, texts)
        return self._chunks[name]

    def _read(self, chunk: Chunk, texts: list) -> ChunkWords:
        """One regex pass over the chunk's texts, joined with a separator each."""
        tokens = chunk.token_level()
        rows = np.asarray(tokens["doc_rows"], dtype=np.int64) - chunk.entry.start
        documents = [texts[r] for r in rows]
        if not all(isinstance(d, str) for d in documents):
            raise StoreCorruptError(f"{chunk.folder}: an encoded row has no text in the documents table")
        lengths = np.array([len(d) for d in documents], dtype=np.int64)
        token_ptr = np.asarray(tokens["token_ptr"], dtype=np.int64)
        document_of_token = np.repeat(np.arange(len(lengths)), np.diff(token_ptr))
        start = np.asarray(tokens["char_start"], dtype=np.int64)
        end = start + np.asarray(tokens["char_len"], dtype=np.int64)
        if (end > lengths[document_of_token]).any():
            raise StoreCorruptError(f"{chunk.folder / 'char_len.npy'}: token spans reach beyond their text; the chunk "
                                    "cannot be trusted")
        offset = np.r_[0, np.cumsum(lengths + 1)][:-1]  # where each document starts in the joined text
        joined = "\n".join(documents)
        found, first, last = touched_words(joined, start + offset[document_of_token], end + offset[document_of_token])
        distinct, word_index = np.unique(np.array([m.group().lower() for m in found], dtype=object),
                                         return_inverse=True)
        word_id = np.array([self._id(w) for w in distinct], dtype=np.int64)[word_index.reshape(-1)]
        token_word = np.full(len(start), -1, dtype=np.int64)
        has_word = first <= last
        token_word[has_word] = word_id[first[has_word]]
        for t in np.flatnonzero(~has_word):  # punctuation and symbols stand for themselves; whitespace for nothing
            symbol = joined[start[t] + offset[document_of_token[t]]:end[t] + offset[document_of_token[t]]].strip()
            if symbol and len(symbol) <= MAX_SYMBOL:
                token_word[t] = self._id(symbol)
        word_end = np.array([m.end() for m in found], dtype=np.int64)
        bounds = np.searchsorted(word_end, np.r_[offset, len(joined) + 1], side="right")
        words = [m.group() for m in found]
        document_tag = np.array([TAG_ID[document_language(words[a:b]) if b > a else None]
                                 for a, b in zip(bounds[:-1], bounds[1:])], dtype=np.int64)
        return ChunkWords(token_word=token_word, document_tag=document_tag)


@dataclass(frozen=True)
class FeatureWords:
    """What the features fire on in a set of documents: the words under their strong activations.

    ``mass[f, i]`` is the summed strong activations of feature f on tokens that stand for ``words[i]``."""

    mass: sp.csr_matrix
    """(d_sae, n_words) float32."""
    words: np.ndarray
    """The lower-cased words (and symbols), an object array."""
    hits: sp.csr_matrix | None = None
    """(d_sae, n_words) how many strong activations each mass entry sums; None where unknown."""
    word_tokens: np.ndarray | None = None
    """(n_words,) how many tokens of these documents stand for each word, active or not; None where unknown."""
    tags: tuple | None = None
    """Each feature's script or language (:data:`TAGS`), where :data:`TAG_SHARE` of its strong mass is in one."""
    strongest: np.ndarray | None = None
    """(d_sae, 4) each feature's strongest activation here: value, row, character start and end of its token
    (row -1 where the feature never fires)."""

    def top(self, feature: int, n: int = 5) -> list[str]:
        """The ``n`` words carrying most of the feature's strong activations, most first."""
        row = self.mass[feature]
        order = np.argsort(-row.data, kind="stable")[:n]
        return [str(w) for w in self.words[row.indices[order]]]

    def fires_on(self, feature: int, n: int = 5) -> list[str]:
        """The ``n`` words most specific to the feature (module docstring), most first: words it fired on more
        than once before words seen once (an anecdote, not a pattern), and only words it fires on more than their
        share of all tokens; ties in alphabetical order, so the order never depends on which chunk was read first.
        Without token counts, the words carrying most of its mass (:meth:`top`)."""
        if self.word_tokens is None:
            return self.top(feature, n)
        return [str(w) for w in self.words[self.specific_words(feature, n)[0]]]

    def specific_words(self, feature: int, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(word ids, specificity) of the feature's :meth:`fires_on` words, in that order; needs token counts."""
        pointers, words, scores = self._ranked
        start, stop = pointers[feature], pointers[feature + 1]
        stop = min(start + n, stop)
        return words[start:stop].astype(np.int64), scores[start:stop]

    @functools.cached_property
    def _ranked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every feature's words in :meth:`fires_on` order, as CSR pointers (d_sae + 1), word ids and their
        specificity: one sort of all (feature, word) entries, so a table of thousands of features reads its words
        at once."""
        mass = self.mass.tocsr()
        feature = np.repeat(np.arange(mass.shape[0]), np.diff(mass.indptr))
        share = (self.word_tokens[mass.indices] + 1.0) / (self.word_tokens.sum() + len(self.words))
        feature_mass = np.asarray(mass.sum(axis=1), dtype=np.float64).ravel()
        score = specificity(mass.data.astype(np.float64), feature_mass[feature], share)
        hits = self.hits.tocsr()[feature, mass.indices].A1 if self.hits is not None else np.full(mass.nnz, 2)
        alphabetical = np.argsort(np.argsort(self.words.astype(str)))[mass.indices]
        order = np.lexsort((alphabetical, -score, hits < 2, feature))
        order = order[score[order] > 0]
        pointers = np.searchsorted(feature[order], np.arange(mass.shape[0] + 1))
        return pointers, mass.indices[order], score[order]


def feature_words(chunks: list[Chunk], texts, index: WordIndex, peak: np.ndarray, d_sae: int,
                  rows: np.ndarray | None = None) -> FeatureWords:
    """:class:`FeatureWords` over the encoded rows of ``chunks`` (only those in ``rows``, sorted, when given).
    ``texts(chunk)`` gives the texts of a chunk's range of rows; ``peak`` is each feature's largest activation over
    the documents counted (what "strong" is relative to). One vectorised pass per chunk."""
    parts, word_tokens, tag_mass, strongest = [], [], np.zeros((d_sae, len(TAGS))), np.zeros((d_sae, 4))
    strongest[:, 1] = -1
    for chunk in chunks:
        if rows is not None and np.searchsorted(rows, chunk.entry.start) == np.searchsorted(rows, chunk.entry.stop):
            continue  # none of the rows counted is in this chunk
        words = index.chunk(chunk, texts(chunk))
        tokens = chunk.token_level()
        token_ptr = np.asarray(tokens["token_ptr"], dtype=np.int64)
        document_of_token = np.repeat(np.arange(len(token_ptr) - 1), np.diff(token_ptr))
        counted = np.isin(chunk.rows, rows) if rows is not None else np.ones(len(token_ptr) - 1, dtype=bool)
        counted_token = counted[document_of_token] & (words.token_word >= 0)
        word_tokens.append(np.bincount(words.token_word[counted_token]))

        token_of_activation = np.repeat(np.arange(len(document_of_token)), np.asarray(tokens["act_count"], np.int64))
        features = np.asarray(tokens["act_features"], dtype=np.int64)
        values = np.asarray(tokens["act_values"], dtype=np.float32)
        keep = counted_token[token_of_activation] & (values >= STRONG * peak[features]) & (values > 0)
        f, t, v = features[keep], token_of_activation[keep], values[keep]
        word = words.token_word[t]
        parts.append((f, word, v))
        tag = tag_of_activations(index.word_script[word], words.document_tag[document_of_token[t]])
        tag_mass += np.bincount(f * len(TAGS) + tag, weights=v, minlength=d_sae * len(TAGS)).reshape(d_sae, -1)
        if f.size:  # each feature's strongest activation in this chunk, kept where it beats the earlier ones
            order = np.lexsort((-v, f))
            first = order[np.r_[True, f[order][1:] != f[order][:-1]]]
            better = v[first] > strongest[f[first], 0]
            best, token = first[better], t[first[better]]
            start = np.asarray(tokens["char_start"], dtype=np.int64)[token]
            strongest[f[best]] = np.column_stack([v[best], chunk.rows[document_of_token[token]], start,
                                                  start + np.asarray(tokens["char_len"], dtype=np.int64)[token]])
    n_words = len(index.vocabulary)
    features, word_ids, values = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64)
                                  for i in range(3))
    shape = (d_sae, n_words)
    mass = sp.csr_matrix((values.astype(np.float32), (features, word_ids)), shape=shape)  # repeats are summed
    hits = sp.csr_matrix((np.ones(features.size, dtype=np.int32), (features, word_ids)), shape=shape)
    counts = np.zeros(n_words, dtype=np.int64)
    for part in word_tokens:
        counts[: part.size] += part
    return FeatureWords(mass=mass, words=index.words, hits=hits, word_tokens=counts, tags=tuple(tags_of(tag_mass)),
                        strongest=strongest)


def document_words(chunks: list[Chunk], texts, index: WordIndex, rows: np.ndarray) -> sp.csr_matrix:
    """(len(rows), n_words) presence: 1 where the document at ``rows[i]`` (ascending, encoded rows) has a token
    standing for the word."""
    parts = []
    for chunk in chunks:
        first, stop = np.searchsorted(rows, [chunk.entry.start, chunk.entry.stop])
        if first == stop:
            continue
        words = index.chunk(chunk, texts(chunk))
        position = np.searchsorted(chunk.rows, rows[first:stop])  # where each of rows[first:stop] is in the chunk
        if (position >= len(chunk.rows)).any() or (chunk.rows[position] != rows[first:stop]).any():
            raise ValueError(f"rows {rows[first:stop].tolist()} include some that are not encoded")
        out = np.full(len(chunk.rows), -1, dtype=np.int64)
        out[position] = np.arange(first, stop)  # the chunk's documents as rows of the result; -1: not asked for
        token_ptr = np.asarray(chunk.token_level()["token_ptr"], dtype=np.int64)
        document = out[np.repeat(np.arange(len(chunk.rows)), np.diff(token_ptr))]
        keep = (document >= 0) & (words.token_word >= 0)
        parts.append((document[keep], words.token_word[keep]))
    document, word = (np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64) for i in range(2))
    presence = sp.csr_matrix((np.ones(word.size, dtype=np.int32), (document, word)),
                             shape=(len(rows), len(index.vocabulary)))
    presence.data[:] = 1  # repeated words were summed
    return presence

"""What each feature fires on, in words: the words under its strongest token activations in a store.

Search by label matches a query against these (see ``analysis/label_search.py``): they show what a feature
does on this very text, where its label was written from another corpus. A token stands for the whole word
it lies in (the token ``ena`` of ``buena`` gives "buena"), lower-cased; a token that touches no word
(punctuation, spaces) gives none. Only activations of at least :data:`STRONG` times the feature's largest
activation in the store count: a feature's weak activations are its noise, not what it stands for.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .chunk import Chunk
from .errors import StoreCorruptError

STRONG = 0.5
# Chinese and Japanese are written without spaces: there, each ideograph or kana is a word of its own (else a
# whole clause would be one). Elsewhere a word is a maximal run of letters and digits.
UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
WORD = re.compile(rf"[^\W{UNSPACED}]+|[{UNSPACED}]")


@dataclass(frozen=True)
class FeatureWords:
    """``mass[f, i]``: the summed strong activations of feature f on tokens inside the word ``words[i]``."""

    mass: sp.csr_matrix
    """(d_sae, n_words) float32."""
    words: np.ndarray
    """The lower-cased words, an object array."""

    def top(self, feature: int, n: int = 5) -> list[str]:
        """The ``n`` words carrying most of the feature's strong activations, most first."""
        row = self.mass[feature]
        order = np.argsort(-row.data, kind="stable")[:n]
        return [str(w) for w in self.words[row.indices[order]]]


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


def feature_words(chunks: list[Chunk], texts: pd.Series, peak: np.ndarray, d_sae: int) -> FeatureWords:
    """:class:`FeatureWords` over the encoded rows of ``chunks``; ``texts`` holds every row's text and ``peak``
    each feature's largest activation in the store. One vectorised pass per chunk."""
    vocabulary: dict[str, int] = {}
    parts = [_chunk_words(chunk, texts, peak, vocabulary) for chunk in chunks]
    features, word_ids, values = (np.concatenate([p[i] for p in parts] or [np.zeros(0)]) for i in range(3))
    mass = sp.csr_matrix((values.astype(np.float32), (features.astype(np.int64), word_ids.astype(np.int64))),
                         shape=(d_sae, len(vocabulary)))  # repeated (feature, word) pairs are summed
    return FeatureWords(mass=mass, words=np.array(list(vocabulary), dtype=object))


def _chunk_words(chunk: Chunk, texts: pd.Series, peak: np.ndarray,
                 vocabulary: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature, word id, value) of every strong activation of one chunk on a word; adds new words to
    ``vocabulary``. The chunk's texts are joined into one string so that one regex pass finds every word."""
    tokens = chunk.token_level()
    documents = texts.iloc[np.asarray(tokens["doc_rows"], dtype=np.int64)]
    if pd.api.types.infer_dtype(documents, skipna=False) not in ("string", "empty"):
        raise StoreCorruptError(f"{chunk.folder}: an encoded row has no text in the documents table")
    lengths = documents.str.len().to_numpy(dtype=np.int64)
    document_of_token = np.repeat(np.arange(len(lengths)), np.diff(np.asarray(tokens["token_ptr"], dtype=np.int64)))
    start = np.asarray(tokens["char_start"], dtype=np.int64)
    end = start + np.asarray(tokens["char_len"], dtype=np.int64)
    if (end > lengths[document_of_token]).any():
        raise StoreCorruptError(f"{chunk.folder / 'char_len.npy'}: token spans reach beyond their text; the chunk "
                                "cannot be trusted")
    offset = np.r_[0, np.cumsum(lengths + 1)][:-1][document_of_token]  # texts joined with one separator each
    found, word_of_token, last = touched_words("\n".join(documents), start + offset, end + offset)
    has_word = word_of_token <= last  # a token's word: the first it touches

    token_of_activation = np.repeat(np.arange(len(start)), np.asarray(tokens["act_count"], dtype=np.int64))
    features = np.asarray(tokens["act_features"], dtype=np.int64)
    values = np.asarray(tokens["act_values"], dtype=np.float32)
    keep = has_word[token_of_activation] & (values >= STRONG * peak[features])
    distinct, word_index = np.unique(np.array([m.group() for m in found], dtype=object), return_inverse=True)
    global_id = np.array([vocabulary.setdefault(w.lower(), len(vocabulary)) for w in distinct], dtype=np.int64)
    return features[keep], global_id[word_index[word_of_token[token_of_activation[keep]]]], values[keep]

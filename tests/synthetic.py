"""Stores built without a model: real text, word tokens, and activations that are a fixed function of each word.

Store, dataset and analysis tests use these instead of running the reader: they take milliseconds, and
the activations have known structure, so assertions can be exact. A token is a word with its leading
whitespace (as byte-level BPE tokens are); every token fires feature 0 ("any token"), words with letters
beyond ASCII fire feature 1, words ending in punctuation fire feature 2, and each word fires two features
of its own chosen by a hash of the lower-cased word, with values drawn from the same hash.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from interp_embed import Dataset
from interp_embed.encode.session import rows_to_skip
from interp_embed.spec.plan import EncodePlan
from interp_embed.store import EncodedDocument, EncoderRecord, Store

D_SAE = 256
ANY_TOKEN, NON_ASCII, PUNCTUATION = 0, 1, 2
LABELS = {ANY_TOKEN: "any token", NON_ASCII: "letters beyond ASCII (ä, ñ, é …)", PUNCTUATION: "punctuation at a word's end",
          **{f: f"words hashed to {f}" for f in range(3, D_SAE)}}
TOKEN = re.compile(r"\s*\S+")


def word_features(word: str) -> dict[int, float]:
    """The features a word fires and their values (float16-exact, > 0)."""
    key = word.strip().lower()
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    acts = {ANY_TOKEN: 0.5}
    if any(ord(c) > 127 for c in key):
        acts[NON_ASCII] = 2.0
    if key and key[-1] in ".,;:!?":
        acts[PUNCTUATION] = 1.5
    for i in (0, 2):
        acts[3 + int.from_bytes(digest[i:i + 2], "little") % (D_SAE - 3)] = 0.25 + digest[4 + i // 2] / 64
    return {f: float(np.float16(v)) for f, v in sorted(acts.items())}


def encode_text(text: str, row: int) -> EncodedDocument:
    """The synthetic encoding of one text: tokens, their spans and their activations."""
    matches = list(TOKEN.finditer(text))
    features, values, counts = [], [], []
    for m in matches:
        acts = word_features(m.group())
        features += list(acts)
        values += list(acts.values())
        counts.append(len(acts))
    ids = [int.from_bytes(hashlib.blake2b(m.group().encode(), digest_size=2).digest(), "little") for m in matches]
    return EncodedDocument(row=row, token_ids=np.array(ids, dtype=np.int64),
                           spans=np.array([m.span() for m in matches], dtype=np.int64).reshape(-1, 2),
                           act_ptr=np.r_[0, np.cumsum(counts)].astype(np.int64),
                           act_features=np.array(features, dtype=np.int64), act_values=np.array(values, dtype=np.float16))


def synthetic_store(path: Path, frame: pd.DataFrame, field: str = "text", chunk_chars: int = 400,
                    encode_chunks: int | None = None, description: str = "", encode=None,
                    sae_folder: Path | None = None) -> Store:
    """A store of ``frame`` with synthetic activations; rows whose text cannot be encoded are skipped.

    ``encode_chunks`` commits only that many chunks of the plan (the rest stay pending); ``encode`` replaces
    :func:`encode_text`; ``sae_folder`` (see :func:`synthetic_sae_folder`) is recorded as the SAE that encoded it.
    """
    encode = encode or encode_text
    plan = EncodePlan(chunk_tokens=None, chunk_chars=chunk_chars)  # the older rule: sizes are easy to reason about
    skipped = rows_to_skip(frame, field, on_error="skip")
    source, sha256 = None, None
    if sae_folder is not None:
        from interp_embed.saes import LocalSAE

        sae = LocalSAE(path=sae_folder)
        source, sha256 = sae.spec(), sae.fingerprint()
    encoder = EncoderRecord(source=source, reader=None, sae={"architecture": "synthetic", "d_sae": D_SAE},
                            sae_sha256=sha256)
    store = Store.create(path, frame, field, encoder=encoder, plan=plan, skipped=skipped, labels=LABELS,
                         dataset_description=description)
    texts = frame[field].tolist()
    with store.writing():
        for start, stop in store.pending_chunks()[:encode_chunks]:
            store.commit_chunk(start, stop, [encode(texts[r], r) for r in range(start, stop) if r not in skipped])
    return store


def synthetic_sae_folder(path: Path, token_shares: dict[int, float], labelling_tokens: int = 100_000) -> Path:
    """A folder standing for the SAE of the synthetic stores: its weights file (any bytes: only its SHA-256 is
    read) and a ``feature_summaries.json`` that gives each feature its share of the tokens of a labelling corpus
    (``token_shares``; a feature left out never fired there)."""
    import json

    path.mkdir(parents=True, exist_ok=True)
    (path / "cfg.json").write_text(json.dumps({"d_sae": D_SAE}))
    (path / "sae_weights.safetensors").write_bytes(b"synthetic weights")
    summaries = {str(f): {"frequency": share, "top_words": [], "top_contexts": []} for f, share in token_shares.items()}
    (path / "feature_summaries.json").write_text(json.dumps({"about": {"labelling_tokens": labelling_tokens},
                                                             "features": summaries}))
    return path


def synthetic_dataset(path: Path, frame: pd.DataFrame, **options) -> Dataset:
    """:func:`synthetic_store`, opened as a Dataset."""
    return Dataset.load_from_file(synthetic_store(path, frame, **options).path)


def token_matrix(row) -> np.ndarray:
    """Dense token × feature activations of one row (small documents only)."""
    return row.latents("all").toarray()


class NoModel:
    """What creating a store asks of an SAE (nothing is encoded with it): a store is made in milliseconds."""

    def feature_labels(self) -> dict[int, str]:
        return {}

    def describe(self) -> EncoderRecord:
        return EncoderRecord(source=None, reader=None, sae={"architecture": "synthetic", "d_sae": D_SAE},
                             sae_sha256=None)


def interrupt_after_first_commit(monkeypatch) -> None:
    """Ctrl-C right after the next chunk is committed (as a person pressing it mid-run would); later commits run."""
    commit = Store.commit_chunk

    def commit_then_interrupt(self, *args):
        commit(self, *args)
        monkeypatch.setattr(Store, "commit_chunk", commit)
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "commit_chunk", commit_then_interrupt)

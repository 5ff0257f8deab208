"""The shipped default SAE: loads in SAELens layout, carries labels, and tells German from English by eye."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from interp_embed.store.words import OFFLINE_LABEL
from interp_embed.architectures import load_sae
from interp_embed.data import default_sae_folder
from interp_embed.files import FEATURE_LABELS
from interp_embed.labeling.offline import load_summaries
from interp_embed.reading.reader import Reader
from interp_embed.saes import DefaultSAE
from interp_embed.spec.reader import BUNDLED_READER, ReaderSpec

FOLDER = default_sae_folder()

GERMAN = [
    "Morgen fahren wir mit dem Zug nach München, um meine Großeltern zu besuchen.",
    "Das Wetter ist heute schön, deshalb gehen die Kinder nach der Schule in den Park.",
    "Können Sie mir bitte sagen, wo der nächste Bahnhof ist?",
    "Ich habe gestern ein spannendes Buch über die Geschichte Europas gelesen.",
    "Die Regierung hat beschlossen, die Steuern im nächsten Jahr zu senken.",
    "Nach dem Essen trinken wir gern einen Kaffee und reden über die Arbeit.",
    "Unser Hund schläft am liebsten auf dem Sofa im Wohnzimmer.",
    "Wenn es regnet, bleibe ich lieber zu Hause und koche eine Suppe.",
]
ENGLISH = [
    "Tomorrow we are taking the train to Munich to visit my grandparents.",
    "The weather is nice today, so the children are going to the park after school.",
    "Could you please tell me where the nearest train station is?",
    "Yesterday I read an exciting book about the history of Europe.",
    "The government has decided to lower taxes next year.",
    "After dinner we like to drink a coffee and talk about work.",
    "Our dog likes to sleep on the sofa in the living room best of all.",
    "When it rains, I would rather stay at home and cook a soup.",
]


def test_shipped_files_load_in_saelens_layout():
    cfg = json.loads((FOLDER / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.15.hook_resid_post" and cfg["dtype"] == "float16"
    sae = load_sae(FOLDER)
    assert sae.cfg.architecture == "topk" and sae.cfg.d_sae >= 8192 and 32 <= sae.cfg.k <= 64
    assert sae.cfg.d_in == 576
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(sae.cfg.d_sae), atol=1e-2)
    assert (FOLDER / "sae_weights.safetensors").stat().st_size < 25 * 2**20


def test_labels_and_summaries_are_plain_json_for_live_features():
    labels = json.loads((FOLDER / FEATURE_LABELS).read_text("utf-8"))
    summaries = load_summaries(FOLDER)
    assert len(labels) >= 0.95 * 8192
    assert set(map(int, labels)) == set(summaries)
    some = summaries[min(summaries)]
    assert {"frequency", "max_activation", "script_or_language", "top_words", "top_contexts"} <= set(some)
    assert all("<<" in c["text"] for c in some["top_contexts"])
    assert all(" — “" in label for label in labels.values())


def test_shipped_labels_read_as_text():
    """Contexts are decoded from the tokens' joined bytes: a character that byte-level BPE splits over two
    tokens reads whole, never as '\ufffd' (the labelling corpus has no '\ufffd' of its own)."""
    labels = DefaultSAE().feature_labels()
    assert len(labels) >= 0.95 * 8192 and all(isinstance(f, int) for f in labels)
    assert [f for f, label in labels.items() if "\ufffd" in label] == []
    contexts = [(f, c["text"]) for f, s in load_summaries(FOLDER).items() for c in s["top_contexts"]]
    assert [fc for fc in contexts if "\ufffd" in fc[1]] == []
    # Every label is one label search reads as offline (none lists nothing), and German features say so.
    assert [f for f, label in labels.items() if not OFFLINE_LABEL.match(label)] == []
    assert sum(label.startswith("German words: '") for label in labels.values()) >= 50


@pytest.mark.slow
@pytest.mark.reader
def test_a_feature_fires_on_german_and_not_on_english():
    sae = load_sae(FOLDER)
    reader = Reader(ReaderSpec(model=BUNDLED_READER, layer=sae.cfg.hook_layer), device="cpu", dtype=torch.float32)
    prefix = list(reader.prefix_ids)

    def active(text: str) -> np.ndarray:
        ids = prefix + reader.document_tokens(text).ids.tolist()
        hidden = reader.forward(torch.tensor([ids]))[0, len(prefix) :]
        return (sae.encode(hidden).max(0).values > 0).numpy()

    german = np.stack([active(t) for t in GERMAN]).mean(0)
    english = np.stack([active(t) for t in ENGLISH]).mean(0)
    separating = np.flatnonzero((german >= 0.75) & (english <= 0.25))
    assert len(separating), f"no German feature: best German-minus-English rate {np.max(german - english):.2f}"

"""Offline labels on real multilingual text: contexts are decoded from the tokens' bytes, so a character that
byte-level BPE splits over two tokens reads whole instead of as two '\ufffd'."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from interp_embed.labeling.offline import _context, build_labels, token_bytes
from interp_embed.reading.reader import resolve_model_path
from interp_embed.spec.reader import BUNDLED_READER

pytestmark = pytest.mark.reader

TEXTS = [
    "Ärger über Öl: Grüße aus München, wo die Straßen heute überfüllt sind.",
    "¿Qué tal, señor Muñoz? El niño comió piña y jalapeños en la montaña.",
    "Party time 🎉🥳 with friends 👩‍👩‍👧 and coffee ☕ — naïve café déjà vu 😀",
]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED_READER))


@pytest.fixture(scope="module")
def pieces(tokenizer) -> list[bytes]:
    return token_bytes(tokenizer)


def _ids(tokenizer, text: str) -> np.ndarray:
    return np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_token_bytes_rebuild_the_text_exactly(tokenizer, pieces):
    for text in TEXTS:
        assert b"".join(pieces[t] for t in _ids(tokenizer, text)).decode("utf-8") == text
    assert pieces[tokenizer.convert_tokens_to_ids("<|im_start|>")] == b"<|im_start|>"


def test_contexts_never_split_a_character(tokenizer, pieces):
    split_tokens = 0
    for text in TEXTS:
        ids = _ids(tokenizer, text)
        for pos in range(len(ids)):
            try:
                pieces[ids[pos]].decode("utf-8")
            except UnicodeDecodeError:
                split_tokens += 1  # decoded alone, this token would read '\ufffd'
            context = _context(ids, pos, pieces, 12, 4)
            assert "\ufffd" not in context, context
            before, marked, after = re.fullmatch(r"(.*)<<(.*)>>(.*)", context).groups()
            assert marked.strip(), context  # a fragment of a character is marked as the whole character
            assert f"{before}{marked}{after}" in " ".join(text.split())
    assert split_tokens >= 5  # the texts do make the tokenizer split characters


@pytest.mark.parametrize("text, char, expected", [("Party time 🎉 now", "🎉", "Party time <<🎉>> now"),
                                                  ("Heute über die Brücke", "ü", "Heute <<ü>>ber die Brü")])
def test_a_character_split_over_tokens_is_marked_whole(tokenizer, pieces, text, char, expected):
    ids = _ids(tokenizer, text)
    # Tokens made only of the character's continuation bytes, which alone decode to nothing readable.
    fragments = [p for p in range(len(ids)) if pieces[ids[p]] in char.encode()[1:]]
    assert fragments, f"the tokenizer does not split {char!r} here: pick another text"
    assert [_context(ids, p, pieces, 12, 4) for p in fragments] == [expected] * len(fragments)


def test_a_document_cut_inside_a_character_shows_the_fragment_as_bytes(tokenizer, pieces):
    ids = _ids(tokenizer, "Heute über")
    lead = [pieces[t] for t in ids].index(b" \xc3")  # ' ü' is split into ' \xc3' + '\xbc'
    cut = ids[: lead + 1]  # a token window of a long text that ends inside 'ü'
    assert _context(cut, len(cut) - 1, pieces, 12, 4) == "Heute<< \\xc3>>"


def test_labels_and_summaries_of_real_text_have_no_replacement_character(tokenizer, pieces):
    docs = [_ids(tokenizer, text) for text in TEXTS]
    doc_idx = np.concatenate([np.full(len(d), i) for i, d in enumerate(docs)])
    pos = np.concatenate([np.arange(len(d)) for d in docs])
    # Feature f fires on every token of document f, strongest on its last one (often part of an emoji).
    values = np.concatenate([np.linspace(0.1, 1.0, len(d)) for d in docs])
    labels, summaries = build_labels(docs, doc_idx, pos, doc_idx, values, pieces, d_sae=4)
    assert sorted(labels) == ["0", "1", "2"]
    assert all("\ufffd" not in summaries[f]["top_contexts"][0]["text"] for f in summaries)
    assert all("\ufffd" not in label for label in labels.values())
    assert summaries["1"]["top_contexts"][0]["text"].endswith("la montaña<<.>>")


def test_a_tokenizer_that_is_not_byte_level_is_refused():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    words = Tokenizer(WordLevel({"▁über": 0, "<unk>": 1}, unk_token="<unk>"))
    sentencepiece_like = PreTrainedTokenizerFast(tokenizer_object=words)
    with pytest.raises(ValueError, match="byte-level"):
        token_bytes(sentencepiece_like)


def test_any_sae_folder_is_labelled_from_a_corpus(tiny_model_dir, tmp_path, sample):
    from interp_embed import Dataset
    from interp_embed.architectures import SAEConfig, build_sae, save_sae
    from interp_embed.files import FEATURE_LABELS, FEATURE_SUMMARIES
    from interp_embed.labeling import label_sae
    from interp_embed.labeling.offline import load_summaries
    from interp_embed.saes import LocalSAE

    torch.manual_seed(0)
    sae = build_sae(SAEConfig(architecture="relu", d_in=64, d_sae=96, hook_layer=1, model_name=str(tiny_model_dir)))
    with torch.no_grad():
        sae.W_enc.normal_(std=30.0)  # the tiny model's hidden states are ~0.02: make features fire on some tokens
        sae.b_enc.fill_(-1.0)
    folder = save_sae(sae, tmp_path / "sae")
    texts = sample.text.tolist()
    labels = label_sae(folder, texts, max_tokens=3000, progress=False)
    assert (folder / FEATURE_LABELS).is_file() and (folder / FEATURE_SUMMARIES).is_file()
    assert LocalSAE(path=folder).feature_labels() == labels and len(labels) >= 10
    summaries = load_summaries(folder)
    assert set(summaries) == set(labels)
    assert all("<<" in c["text"] for s in summaries.values() for c in s["top_contexts"])
    # The labels reach a store encoded with the SAE, so label search works on it.
    ds = Dataset(sample.head(20), sae=LocalSAE(path=folder), save_path=tmp_path / "d.iembed")
    words = {w.strip("'") for label in labels.values() for w in label.split(" — ")[0].split(", ")}
    word = max((w for w in words if w.isalpha()), key=len)  # the longest: not a stop word
    assert ds.feature_labels() == labels
    hits = ds.search(word, by="labels", k=3)
    matched = hits.attrs["features"].query("source == 'label match'").label  # feedback may add features of its own
    assert len(hits) >= 1 and len(matched) and all(word.lower() in label.lower() for label in matched)
    with pytest.raises(ValueError, match="no tokens"):
        label_sae(folder, texts, max_tokens=0, progress=False)
    label_sae(folder, texts, max_tokens=1000, progress=False)  # whole documents, then the start of the next one
    assert json.loads((folder / FEATURE_SUMMARIES).read_text())["about"]["labelling_tokens"] == 1000


# Whole words and script or language tags, on real text: the bundled fortunes in English, German and Spanish,
# joined ten at a time into passages (the labelling corpus is made of passages too; a single fortune is often
# too short for its language to be told).
RUSSIAN = ("Всё смешалось в доме Облонских. Жена узнала, что муж был в связи с бывшею в их доме француженкою-"
           "гувернанткой, и объявила мужу, что не может жить с ним в одном доме.")


@pytest.fixture(scope="module")
def passages() -> dict[str, list[str]]:
    from interp_embed.data import demo_sample

    df = demo_sample()
    return {lang: ["\n\n".join(texts[i : i + 10]) for i in range(0, len(texts), 10)]
            for lang, texts in ((lang, df[df.language == lang].text.tolist()) for lang in ("en", "de", "es"))}


def _fire(docs: list[np.ndarray], fires) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(doc_idx, pos, features, values)`` with feature ``fires(doc, position) -> feature or -1`` at value 1."""
    hits = [(d, p, f) for d in range(len(docs)) for p in range(len(docs[d])) if (f := fires(d, p)) >= 0]
    doc_idx, pos, features = (np.array(column) for column in zip(*hits))
    return doc_idx, pos, features, np.ones(len(hits))


def test_a_token_stands_for_the_whole_word_it_lies_in(tokenizer, pieces, passages):
    from interp_embed.labeling.offline import token_words

    pieces_in_longer_words = 0
    for text in passages["de"]:
        ids = _ids(tokenizer, text)
        units, words = token_words(ids, pieces)
        for token, unit in zip(ids, units):
            if any(c.isalnum() for c in pieces[token].decode("utf-8", "ignore")):
                assert unit in words, (pieces[token], unit)  # a word of the text, never a piece of one
                pieces_in_longer_words += len(unit) > len(pieces[token].decode("utf-8", "ignore").strip())
    assert pieces_in_longer_words >= 200
    ids = _ids(tokenizer, "Ich glaube, daß der Sinn des Lebens darin besteht.")
    units = dict(zip((pieces[t].decode() for t in ids), token_words(ids, pieces)[0]))
    assert (units["be"], units["ens"], units[","]) == ("glaube", "Lebens", ",")  # 'gl|au|be', 'Le|b|ens'
    # Chinese has no spaces: a token there stands for its own characters, not for the whole clause.
    assert set(token_words(_ids(tokenizer, "Linux 內核代碼"), pieces)[0]) == {"Linux", "內", "核", "代", "碼"}


def test_labels_name_the_whole_words_a_feature_fires_in(tokenizer, pieces, passages):
    from interp_embed.labeling.offline import token_words

    docs = [_ids(tokenizer, text) for text in passages["de"]]
    units = [token_words(doc, pieces)[0] for doc in docs]
    # The feature fires on the last piece of every word cut into three or more tokens ('ens' of 'Le|b|ens').
    last_pieces = {(d, p) for d, doc_units in enumerate(units) for p in range(2, len(doc_units))
                   if doc_units[p - 2] == doc_units[p - 1] == doc_units[p] != (units[d] + [None])[p + 1]
                   and doc_units[p][:1].isalpha()}
    fired_words = {units[d][p] for d, p in last_pieces}
    labels, summaries = build_labels(docs, *_fire(docs, lambda d, p: 0 if (d, p) in last_pieces else -1),
                                     pieces, d_sae=1)
    items = re.findall(r"'([^']*)'", labels["0"].split(" — ")[0])
    assert len(items) == 3 and set(items) <= fired_words, labels["0"]
    assert all(word in fired_words for word, _ in summaries["0"]["top_words"])


def test_a_label_names_the_script_or_language_only_where_most_activations_are_in_it(tokenizer, pieces, passages):
    from interp_embed.analysis.label_search import label_terms, stem
    from interp_embed.store.words import WORD

    texts = passages["de"] + passages["es"] + passages["en"] + [RUSSIAN]
    language = ["de"] * len(passages["de"]) + ["es"] * len(passages["es"]) + ["en"] * len(passages["en"]) + ["ru"]
    docs = [_ids(tokenizer, text) for text in texts]
    shown = [[pieces[t].decode("utf-8", "replace") for t in doc] for doc in docs]

    def fires(d: int, p: int) -> int:
        token = shown[d][p]
        if token == ",":
            return 4  # commas, in every language
        if token.strip() == "" and "\n" in token:
            return 5  # line breaks
        if not token.strip()[:1].isalpha():
            return -1
        return {"de": 0, "es": 1, "ru": 2}.get(language[d], 3) if p % 2 else 3  # 3: mixed, every language

    labels, summaries = build_labels(docs, *_fire(docs, fires), pieces, d_sae=6)
    tags = {int(f): s["script_or_language"] for f, s in summaries.items()}
    assert tags == {0: "German", 1: "Spanish", 2: "Cyrillic", 3: None, 4: None, 5: None}, labels
    assert labels["0"].startswith("German words: '") and labels["2"].startswith("Cyrillic words: '")
    assert labels["3"].startswith("'") and labels["4"].startswith("',' — ")
    assert re.match(r"'\\n[^']*'", labels["5"]), labels["5"]  # a line break, spelled out
    # Search still reads an offline label's quoted words, tagged or not, and never its example sentence.
    for label in labels.values():
        items = re.findall(r"'([^']*)'", label.split(" — ")[0])
        words, weight = label_terms(label)
        assert weight == 0.5 and words == [stem(w) for item in items for w in WORD.findall(item.lower())], label


def test_document_language_is_told_by_stop_words_and_never_guessed(passages):
    from interp_embed.store.words import document_language
    from interp_embed.store.words import WORD

    named = {"de": "German", "es": "Spanish", "en": "English"}
    for lang, texts in passages.items():
        detected = [document_language(WORD.findall(text)) for text in texts]
        assert set(detected) <= {named[lang], None}, (lang, detected)
        assert detected.count(named[lang]) >= 0.75 * len(texts), (lang, detected)
    for german, english in zip(passages["de"], passages["en"]):  # half German, half English: no language
        half = len(german) // 2, len(english) // 2
        assert document_language(WORD.findall(german[: half[0]] + english[half[1] :])) is None


def test_docstring_examples():
    import doctest

    from interp_embed.labeling import offline
    from interp_embed.store import words

    assert doctest.testmod(offline).failed == 0 and doctest.testmod(words).failed == 0


@pytest.mark.parametrize("content", ["{not json", '{"features": [1, 2]}', '[]', '{"about": {}}', '{"features": {"x": {}}}'])
def test_a_malformed_summaries_file_is_refused_by_name(tmp_path, content):
    from interp_embed.labeling.offline import load_summaries

    (tmp_path / "feature_summaries.json").write_text(content)
    with pytest.raises(ValueError, match="feature_summaries.json: not a feature summaries file"):
        load_summaries(tmp_path)

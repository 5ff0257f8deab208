"""The reader: any causal LM by local path, hooked at a layer, nothing computed after it."""
import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM

from interp_embed import Dataset
from interp_embed.architectures import SAEConfig, build_sae, save_sae
from interp_embed.reading.reader import Reader
from interp_embed.saes import LocalSAE
from interp_embed.spec.reader import BUNDLED_READER, ReaderSpec

pytestmark = pytest.mark.reader


def test_forward_stops_at_the_hooked_layer(tiny_model_dir):
    reader = Reader(ReaderSpec(model=str(tiny_model_dir), layer=1, role="raw"), device="cpu")
    full = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([reader.document_tokens("Good morning, dear reader!").ids.tolist()])
    with torch.no_grad():
        expected = full(ids, output_hidden_states=True).hidden_states[2]  # output of block 1
    calls = []
    reader.model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head"))
    reader.model.model.norm.register_forward_hook(lambda *a: calls.append("norm"))
    torch.testing.assert_close(reader.forward(ids), expected)
    assert calls == [] and len(reader.model.model.layers) == 2
    assert reader.prefix_ids == list(reader.tokenizer("", add_special_tokens=True)["input_ids"])
    with pytest.raises(ValueError, match="layer 7 does not exist"):
        Reader(ReaderSpec(model=str(tiny_model_dir), layer=7), device="cpu")


def test_chat_template_prefix_is_the_scaffolding_before_the_document(tiny_model_dir):
    reader = Reader(ReaderSpec(model=str(tiny_model_dir), layer=0, role="user"), device="cpu")
    text = reader.tokenizer.decode(reader.prefix_ids)
    assert text.endswith("<|im_start|>user\n") and "<|im_start|>system" in text
    tokens = reader.document_tokens("Hi <|im_end|>")
    assert reader.tokenizer.convert_tokens_to_ids("<|im_end|>") not in tokens.ids.tolist()  # read as text


def test_dataset_with_any_local_model_and_raw_text(tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    sae = build_sae(SAEConfig(architecture="relu", d_in=64, d_sae=256, hook_layer=1, model_name=str(tiny_model_dir)))
    with torch.no_grad():
        sae.W_enc.normal_()
    save_sae(sae, tmp_path / "sae")
    ds = Dataset(pd.DataFrame({"text": ["Good morning!", "Guten Morgen!", "Buenos días"]}),
                 sae=LocalSAE(path=tmp_path / "sae", role="raw"), save_path=tmp_path / "d.iembed")
    assert ds.latents().shape == (3, 256) and ds.latents().nnz > 0
    assert ds._store.encoder.reader.role == "raw"
    assert Dataset.load_from_file(ds.path).latents("count").nnz == ds.latents().nnz


def test_reader_and_sae_must_agree(tiny_model_dir, tmp_path):
    from interp_embed.encode.pipeline import Encoder
    from interp_embed.spec.plan import EncodePlan

    reader = Reader(ReaderSpec(model=str(tiny_model_dir), layer=1, role="raw"), device="cpu")
    wrong_layer = build_sae(SAEConfig(architecture="relu", d_in=64, d_sae=8, hook_layer=2))
    wrong_width = build_sae(SAEConfig(architecture="relu", d_in=32, d_sae=8, hook_layer=1))
    with pytest.raises(ValueError, match="SAE reads blocks.2.hook_resid_post but the reader is hooked at blocks.1"):
        Encoder(reader, wrong_layer, EncodePlan())
    with pytest.raises(ValueError, match="d_in=32"):
        Encoder(reader, wrong_width, EncodePlan())
    with pytest.raises(ValueError, match="window_overlap"):
        EncodePlan(window_tokens=100, window_overlap=60)


@pytest.mark.parametrize("model", ["bundled", "tiny"])
def test_cached_template_prefix_gives_the_hidden_states_of_the_full_sequence(model, tiny_model_dir):
    path = BUNDLED_READER if model == "bundled" else str(tiny_model_dir)
    reader = Reader(ReaderSpec(model=path, layer=1, role="user"), device="cpu")
    docs = [reader.document_tokens(t).ids for t in ("Good morning!", "Guten Morgen, wie geht es Ihnen heute?", "¡Hola!")]
    width = max(map(len, docs))
    ids = torch.full((3, width), reader.pad_id)
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, d in enumerate(docs):
        ids[i, : len(d)], mask[i, : len(d)] = torch.tensor(d), 1
    cached = reader.forward_documents(ids, mask)
    assert reader._prefix_cache_ok is True
    prefix = reader.prefix_ids
    for i, d in enumerate(docs):
        full = reader.forward(torch.tensor([prefix + d.tolist()]))[0, len(prefix):]
        torch.testing.assert_close(cached[i, : len(d)], full, atol=1e-4, rtol=1e-4)

"""Hook points beyond the residual stream: named as SAELens names them, read where TransformerLens reads them
in Llama, Gemma 2 and 3, GPT-2 and Qwen 2 and 3 (tiny random models made here), nothing computed after them."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp_embed import Dataset
from interp_embed.architectures import SAEConfig, build_sae, load_sae, save_sae
from interp_embed.architectures.saelens import config_from_saelens
from interp_embed.encode.pipeline import Encoder
from interp_embed.files import MANIFEST, sha256_json
from interp_embed.reading.reader import Reader, resolve_model_path
from interp_embed.saes import LocalSAE
from interp_embed.spec.hook_point import HookPoint
from interp_embed.spec.plan import EncodePlan
from interp_embed.spec.reader import BUNDLED_READER, ReaderSpec
from interp_embed.store import StoreCorruptError
from interp_embed.store.manifest import ReaderRecord

SITES = ("resid_pre", "resid_post", "attn_out", "mlp_out", "z")


# -- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,point", [
    ("blocks.0.hook_resid_pre", HookPoint(0, "resid_pre")),
    ("blocks.5.hook_resid_post", HookPoint(5, "resid_post")),
    ("blocks.5.hook_attn_out", HookPoint(5, "attn_out")),
    ("blocks.12.hook_mlp_out", HookPoint(12, "mlp_out")),
    ("blocks.3.attn.hook_z", HookPoint(3, "z")),
])
def test_hook_names_round_trip(name, point):
    assert HookPoint.parse(name) == point and point.name == name


def test_the_input_of_a_later_block_is_the_output_of_the_one_before():
    assert HookPoint.parse("blocks.4.hook_resid_pre") == HookPoint(3, "resid_post")
    with pytest.raises(ValueError, match=r"use HookPoint\(3, 'resid_post'\)"):
        HookPoint(4, "resid_pre")


@pytest.mark.parametrize("name", ["blocks.3.hook_mlp_in", "blocks.3.attn.hook_q", "blocks.x.hook_resid_post",
                                  "hook_embed", "", None])
def test_unknown_hook_names_are_refused_with_the_supported_ones(name):
    with pytest.raises(ValueError, match="hook_resid_pre, hook_resid_post, hook_attn_out, hook_mlp_out, attn.hook_z"):
        HookPoint.parse(name)


def test_unknown_sites_and_layers_are_refused():
    with pytest.raises(ValueError, match="hook site 'mlp_in' is not supported"):
        ReaderSpec(layer=2, site="mlp_in")
    with pytest.raises(ValueError, match="hook site 'hook_z' is not supported"):
        SAEConfig(architecture="relu", d_in=8, d_sae=16, hook_layer=2, hook_site="hook_z")
    with pytest.raises(ValueError, match="layer must be an integer >= 0"):
        HookPoint(-1, "mlp_out")


def _saelens_cfg(hook_name: str, **extra) -> dict:
    return {"architecture": "standard", "d_in": 8, "d_sae": 16, "metadata": {"hook_name": hook_name}, **extra}


def test_saelens_configs_name_the_site_and_are_written_back():
    cfg = config_from_saelens(_saelens_cfg("blocks.2.hook_mlp_out"))
    assert (cfg.hook_layer, cfg.hook_site, cfg.hook_point) == (2, "mlp_out", HookPoint(2, "mlp_out"))
    z = config_from_saelens(_saelens_cfg("blocks.1.attn.hook_z", reshape_activations="hook_z"))
    assert z.hook_point == HookPoint(1, "z")
    # Before SAELens 6 a config said nothing about reshaping, and every hook_z SAE read all heads at once.
    flat = {"d_in": 8, "d_sae": 16, "hook_name": "blocks.1.attn.hook_z", "architecture": "standard"}
    assert config_from_saelens(flat).hook_point == HookPoint(1, "z")


def test_saved_saes_keep_their_hook_point(tmp_path):
    sae = build_sae(SAEConfig(architecture="relu", d_in=8, d_sae=16, hook_layer=1, hook_site="z"))
    save_sae(sae, tmp_path / "z")
    written = json.loads((tmp_path / "z" / "cfg.json").read_text())
    assert written["metadata"]["hook_name"] == "blocks.1.attn.hook_z" and written["reshape_activations"] == "hook_z"
    assert load_sae(tmp_path / "z").cfg.hook_point == HookPoint(1, "z")


@pytest.mark.parametrize("extra,message", [
    (dict(reshape_activations="none"), "reshape_activations='none'"),
    (dict(reshape_activations="hook_z", hook_head_index=3), "hook_head_index=3"),
])
def test_hook_z_saes_of_single_heads_are_refused(extra, message):
    with pytest.raises(ValueError, match=f"cfg.json: .*{message}.*all attention heads at once"):
        config_from_saelens(_saelens_cfg("blocks.1.attn.hook_z", **extra), source="cfg.json")
    with pytest.raises(ValueError, match="reshape_activations='hook_z'"):
        config_from_saelens(_saelens_cfg("blocks.1.hook_mlp_out", reshape_activations="hook_z"))


def test_residual_stream_records_are_written_as_before_sites_existed():
    """Stores written before sites existed compare their recorded encoder with the JSON written now."""
    cfg = SAEConfig(architecture="relu", d_in=8, d_sae=16, hook_layer=2)
    assert set(cfg.to_json()) == {"architecture", "d_in", "d_sae", "hook_layer", "apply_b_dec_to_input",
                                  "model_name", "extra"}
    assert SAEConfig(architecture="relu", d_in=8, d_sae=16, hook_layer=2, hook_site="mlp_out").to_json()[
        "hook_site"] == "mlp_out"
    assert ReaderSpec.from_json(ReaderSpec(layer=2).to_json()) == ReaderSpec(layer=2)
    assert "site" not in ReaderSpec(layer=2).to_json()
    assert ReaderSpec.from_json(ReaderSpec(layer=0, site="resid_pre").to_json()).site == "resid_pre"
    record = ReaderRecord(model="m", layer=2, role="raw", d_model=8, vocab_size=10, prefix_ids=(1,))
    assert "site" not in record.to_json()


# -- tiny readers of each architecture --------------------------------------------------------------

_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512)
# heads × head size ≠ hidden size where the architecture allows it, so that z's width is checked.
_CONFIGS = {
    "llama": ("LlamaConfig", _SHAPE),
    "gemma2": ("Gemma2Config", dict(_SHAPE, head_dim=24, sliding_window=16)),
    "gemma3": ("Gemma3TextConfig", dict(_SHAPE, head_dim=24, sliding_window=16)),
    "gpt2": ("GPT2Config", dict(n_embd=64, n_layer=3, n_head=4, n_positions=512)),
    "qwen2": ("Qwen2Config", _SHAPE),
    "qwen3": ("Qwen3Config", dict(_SHAPE, head_dim=24)),
}
ARCHITECTURES = [name for name, (config, _) in _CONFIGS.items() if hasattr(transformers, config)]

# Where TransformerLens reads each site, written out per architecture: (module path, read its input?).
_LLAMA_LIKE = {"resid_pre": ("model.layers.0", True), "resid_post": ("model.layers.1", False),
               "attn_out": ("model.layers.1.self_attn", False), "mlp_out": ("model.layers.1.mlp", False),
               "z": ("model.layers.1.self_attn.o_proj", True)}
_GEMMA = {**_LLAMA_LIKE, "attn_out": ("model.layers.1.post_attention_layernorm", False),
          "mlp_out": ("model.layers.1.post_feedforward_layernorm", False)}
_GPT2 = {"resid_pre": ("transformer.h.0", True), "resid_post": ("transformer.h.1", False),
         "attn_out": ("transformer.h.1.attn", False), "mlp_out": ("transformer.h.1.mlp", False),
         "z": ("transformer.h.1.attn.c_proj", True)}
REFERENCE = {"llama": _LLAMA_LIKE, "qwen2": _LLAMA_LIKE, "qwen3": _LLAMA_LIKE, "gemma2": _GEMMA, "gemma3": _GEMMA,
             "gpt2": _GPT2}


@pytest.fixture(scope="module")
def tiny_readers(tmp_path_factory) -> dict:
    """A random 3-block, 64-wide model of each architecture with the bundled reader's tokenizer, in a folder."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED_READER))
    folders = {}
    for name in ARCHITECTURES:
        config_class, shape = _CONFIGS[name]
        config = getattr(transformers, config_class)(**shape, vocab_size=len(tokenizer),
                                                     bos_token_id=tokenizer.bos_token_id,
                                                     eos_token_id=tokenizer.eos_token_id)
        torch.manual_seed(0)
        folders[name] = tmp_path_factory.mktemp(name)
        AutoModelForCausalLM.from_config(config).save_pretrained(folders[name])
        tokenizer.save_pretrained(folders[name])
    return folders


def _reference(folder, architecture: str, site: str, ids: torch.Tensor):
    """The site's activation from a full, untruncated forward, and the modules called before it was read."""
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    path, reads_input = REFERENCE[architecture][site]
    module, calls, seen = model.get_submodule(path), [], {}

    def keep(value):
        seen["value"] = value[0] if isinstance(value, tuple) else value
        calls.append("<hook point>")

    if reads_input:
        module.register_forward_pre_hook(lambda m, args, kwargs: keep(args or (kwargs["hidden_states"],)),
                                         with_kwargs=True)
    else:
        module.register_forward_hook(lambda m, args, output: keep(output))
    _log_calls(model, calls)
    with torch.no_grad():
        hidden = model(input_ids=ids, use_cache=False, output_hidden_states=True).hidden_states
    return seen["value"], calls[: calls.index("<hook point>")], hidden


def _log_calls(model: torch.nn.Module, calls: list) -> None:
    for name, module in model.named_modules():
        module.register_forward_pre_hook(lambda m, args, name=name: calls.append(name))


@pytest.mark.reader
@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_reader_reads_the_site_and_computes_nothing_after_it(tiny_readers, architecture, site):
    layer = 0 if site == "resid_pre" else 1
    reader = Reader(ReaderSpec(model=str(tiny_readers[architecture]), layer=layer, site=site, role="user"),
                    device="cpu")
    docs = [reader.document_tokens(text).ids.tolist() for text in ("Good morning, dear reader!", "¡Hola!")]
    ids = torch.tensor([reader.prefix_ids + docs[0]])
    expected, called_before, hidden = _reference(tiny_readers[architecture], architecture, site, ids)
    calls = []
    _log_calls(reader.model, calls)
    got = reader.forward(ids)
    assert torch.equal(got, expected)
    assert calls == called_before  # the same modules in the same order, and nothing after the hook point
    assert got.shape[-1] == reader.width == (96 if site == "z" and architecture in ("gemma2", "gemma3", "qwen3")
                                             else 64)
    if site in ("resid_pre", "resid_post"):  # the hidden states transformers reports
        assert torch.equal(got, hidden[layer + (site == "resid_post")])
    # The cached template prefix gives what feeding it with every document gives.
    width = max(map(len, docs))
    doc_ids, mask = torch.full((2, width), reader.pad_id), torch.zeros(2, width, dtype=torch.long)
    for i, doc in enumerate(docs):
        doc_ids[i, : len(doc)], mask[i, : len(doc)] = torch.tensor(doc), 1
    cached = reader.forward_documents(doc_ids, mask)
    assert reader._prefix_cache_ok is True
    for i, doc in enumerate(docs):
        full = reader.forward(torch.tensor([reader.prefix_ids + doc]))[0, len(reader.prefix_ids):]
        torch.testing.assert_close(cached[i, : len(doc)], full, atol=1e-5, rtol=1e-4)


@pytest.mark.reader
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_attention_and_mlp_outputs_add_up_to_the_residual_stream(tiny_readers, architecture):
    """TransformerLens' decomposition: resid_post of block N = resid_post of N-1 + attn_out + mlp_out of N."""
    ids = torch.tensor([list(range(100, 120))])
    read = {(layer, site): Reader(ReaderSpec(model=str(tiny_readers[architecture]), layer=layer, site=site),
                                  device="cpu").forward(ids)
            for layer, site in ((0, "resid_post"), (1, "attn_out"), (1, "mlp_out"), (1, "resid_post"))}
    torch.testing.assert_close(read[1, "resid_post"], read[0, "resid_post"] + read[1, "attn_out"] + read[1, "mlp_out"])


@pytest.mark.reader
def test_reader_and_sae_must_read_the_same_hook_point(tiny_readers):
    reader = Reader(ReaderSpec(model=str(tiny_readers["gemma2"]), layer=1, site="z"), device="cpu")
    with pytest.raises(ValueError, match="SAE reads blocks.1.hook_mlp_out but the reader is hooked at blocks.1.attn.hook_z"):
        Encoder(reader, build_sae(SAEConfig(architecture="relu", d_in=96, d_sae=8, hook_layer=1, hook_site="mlp_out")),
                EncodePlan())
    with pytest.raises(ValueError, match="d_in=64 but the reader's activations at blocks.1.attn.hook_z are 96 wide"):
        Encoder(reader, build_sae(SAEConfig(architecture="relu", d_in=64, d_sae=8, hook_layer=1, hook_site="z")),
                EncodePlan())


@pytest.mark.reader
def test_an_mlp_out_sae_encodes_a_dataset_end_to_end(tiny_readers, tmp_path):
    folder = tiny_readers["gemma2"]
    torch.manual_seed(0)
    sae = build_sae(SAEConfig(architecture="relu", d_in=64, d_sae=256, hook_layer=1, hook_site="mlp_out",
                              model_name=str(folder)))
    with torch.no_grad():
        sae.W_enc.normal_()
    save_sae(sae, tmp_path / "sae")
    assert json.loads((tmp_path / "sae" / "cfg.json").read_text())["metadata"]["hook_name"] == "blocks.1.hook_mlp_out"
    texts = ["Good morning!", "Guten Morgen, wie geht es Ihnen?", "Buenos días"]
    ds = Dataset(pd.DataFrame({"text": texts}), sae=LocalSAE(path=tmp_path / "sae", role="user"),
                 save_path=tmp_path / "d.iembed")
    assert ds.encoder.reader.site == "mlp_out" and ds.encoder.sae["hook_site"] == "mlp_out"
    assert "reading layer 1 (mlp_out)" in ds.encoder.summary()
    # Each document's stored activations are the SAE applied to the full model's post-feedforward norm output.
    reader = Reader(ReaderSpec(model=str(folder), layer=1, role="user"), device="cpu")  # for the tokens only
    for row, text in enumerate(texts):
        doc = reader.document_tokens(text).ids.tolist()
        expected, _, _ = _reference(folder, "gemma2", "mlp_out", torch.tensor([reader.prefix_ids + doc]))
        with torch.no_grad():
            want = sae.encode(expected[0, len(reader.prefix_ids):]).numpy()
        np.testing.assert_allclose(ds[row].latents("all", compress=False), want, rtol=2e-3, atol=2e-3)
    reopened = Dataset.load_from_file(ds.path)
    assert reopened.encoder == ds.encoder and reopened.latents().nnz == ds.latents().nnz > 0
    # The same weights read at the residual stream are another encoder, and a store says so.
    shutil.copytree(tmp_path / "sae", tmp_path / "resid")
    cfg = json.loads((tmp_path / "resid" / "cfg.json").read_text())
    cfg["metadata"]["hook_name"] = "blocks.1.hook_resid_post"
    (tmp_path / "resid" / "cfg.json").write_text(json.dumps(cfg))
    resid = LocalSAE(path=tmp_path / "resid", role="user")
    assert ds.encoder.differences(resid.identity()) == ["SAE config: hook_site 'mlp_out' vs None"]
    # A manifest naming a site that does not exist is refused by name.
    body = json.loads((ds.path / MANIFEST).read_text())["body"]
    body["encoder"]["reader"]["site"] = "mlp_in"
    (ds.path / MANIFEST).write_text(json.dumps({"body": body, "sha256": sha256_json(body)}))
    with pytest.raises(StoreCorruptError, match="reader site 'mlp_in' is none of resid_pre, resid_post"):
        Dataset.load_from_file(ds.path)

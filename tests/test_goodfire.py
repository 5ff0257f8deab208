"""GoodfireSAE as the original calls it: both variants, quantize=True, device="auto", labels online and offline.

The hub is a local folder in the hub's cache layout (HF_HUB_OFFLINE=1), holding tiny files in Goodfire's formats
under the real repository names: a random 64-wide Llama with the depth of the real reader, and a Goodfire SAE
state dict. So the code a user runs — download, conversion, reader loading — runs here for real, offline.
"""
import logging
import os
import pickle
import shutil
import socket

import pandas as pd
import pytest
import torch

from interp_embed import Dataset
from interp_embed.architectures import load_sae
from interp_embed.reading.reader import Reader
from interp_embed.saes import DefaultSAE, GoodfireSAE, LocalSAE, sae_from_spec
from interp_embed.saes.sources import GOODFIRE_VARIANTS, LABELS_REPO
from interp_embed.spec.plan import EncodePlan
from interp_embed.spec.reader import ReaderSpec

SMALL, LARGE = "Llama-3.1-8B-Instruct-SAE-l19", "Llama-3.3-70B-Instruct-SAE-l50"
D_MODEL, D_SAE = 64, 128
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubCache:
    """A folder laid out like the Hugging Face hub cache, which the hub client reads when offline."""

    def __init__(self, root):
        self.root = root

    def snapshot(self, repo_id: str, repo_type: str = "model"):
        repo = self.root / f"{repo_type}s--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(COMMIT)
        folder = repo / "snapshots" / COMMIT
        folder.mkdir(parents=True, exist_ok=True)
        return folder


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty offline hub cache, and a cache of converted SAEs, both in tmp_path."""
    import huggingface_hub.constants as constants

    root = tmp_path / "hf" / "hub"
    root.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The hub client read both variables when it was imported; these are the values it consults on each call.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("INTERP_EMBED_CACHE", str(tmp_path / "interp_embed"))
    return HubCache(root)


def goodfire_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A Goodfire SAE state dict (``encoder_linear`` / ``decoder_linear``), random, 64 → 128."""
    torch.manual_seed(seed)
    return {"encoder_linear.weight": torch.randn(D_SAE, D_MODEL) / 8, "encoder_linear.bias": torch.randn(D_SAE) / 8,
            "decoder_linear.weight": torch.randn(D_MODEL, D_SAE), "decoder_linear.bias": torch.randn(D_MODEL)}


def put_goodfire_sae(hub: HubCache, variant: str, state: dict) -> None:
    spec = GOODFIRE_VARIANTS[variant]
    torch.save(state, hub.snapshot(spec["repo"]) / spec["file"])


def put_labels(hub: HubCache, variant: str, text: str) -> None:
    path = hub.snapshot(LABELS_REPO, "dataset") / GOODFIRE_VARIANTS[variant]["labels"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def put_reader(hub: HubCache, variant: str, layers: int, tokenizer_dir) -> None:
    """A random 64-wide Llama of ``layers`` blocks with the tokenizer in ``tokenizer_dir``, as the variant's reader."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = hub.snapshot(GOODFIRE_VARIANTS[variant]["model"])
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=D_MODEL, intermediate_size=128,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a connection is recorded and refused."""
    attempts = []

    def refuse(sock, address, *args):
        attempts.append(address)
        raise OSError(f"a test tried to reach {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_constructing_any_sae_reaches_no_network(no_network, tmp_path):
    with pytest.raises(OSError, match="tried to reach"):  # the guard works
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    no_network.clear()
    saes = [
        DefaultSAE(), DefaultSAE(device="cpu", use_assistant_role=False),
        LocalSAE(path=tmp_path / "missing-sae", model="some/model"),
        LocalSAE(sae_id="blocks.8.hook_resid_pre", release="gpt2-small-res-jb", device="cuda:0"),
        GoodfireSAE(), GoodfireSAE(variant_name=SMALL, device="cuda:0", quantize=True),
        GoodfireSAE(variant_name=LARGE, device="auto", quantize=True),
        GoodfireSAE(variant_name=LARGE, device={"model": "auto", "sae": "cuda:0"}),
    ]
    rebuilt = [sae_from_spec(sae.spec(), device=sae.device) for sae in saes]
    assert [repr(s) for s in rebuilt] == [repr(s) for s in saes] and not any(s.is_loaded() for s in saes)
    assert no_network == []


def test_both_goodfire_variants_convert_from_the_hub_cache(hub, no_network):
    states = {SMALL: goodfire_state(0), LARGE: goodfire_state(1)}
    for variant, state in states.items():
        put_goodfire_sae(hub, variant, state)
    x = torch.randn(5, D_MODEL)
    for variant, state in states.items():
        sae = GoodfireSAE(variant_name=variant)
        model = load_sae(sae.sae_folder())
        assert (model.cfg.d_in, model.cfg.d_sae, model.cfg.hook_layer) == (D_MODEL, D_SAE, GOODFIRE_VARIANTS[variant]["layer"])
        assert sae.reader_spec().model == GOODFIRE_VARIANTS[variant]["model"]
        with torch.no_grad():
            expected = torch.relu(x @ state["encoder_linear.weight"].T + state["encoder_linear.bias"])
            torch.testing.assert_close(model.encode(x), expected)
            torch.testing.assert_close(model.decode(expected),
                                       expected @ state["decoder_linear.weight"].T + state["decoder_linear.bias"])
    assert no_network == []


def test_goodfire_files_that_are_not_a_state_dict_of_tensors_are_refused(hub, tmp_path):
    variant = GOODFIRE_VARIANTS[SMALL]
    put_goodfire_sae(hub, SMALL, {"encoder_linear.weight": torch.zeros(D_SAE, D_MODEL)})
    with pytest.raises(ValueError, match=rf"{variant['file']}: not a Goodfire SAE .*decoder_linear.bias"):
        GoodfireSAE(variant_name=SMALL).sae_folder()
    put_goodfire_sae(hub, SMALL, {**goodfire_state(), "decoder_linear.weight": torch.zeros(D_MODEL + 1, D_SAE)})
    with pytest.raises(ValueError, match=rf"{variant['file']}: the Goodfire SAE's tensors do not fit together"):
        GoodfireSAE(variant_name=SMALL).sae_folder()

    # A file that carries code is refused by torch.load(weights_only=True), and the code never runs.
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"encoder_linear.weight": Exploit()}, hub.snapshot(variant["repo"]) / variant["file"],
               pickle_module=pickle)
    with pytest.raises(pickle.UnpicklingError):
        GoodfireSAE(variant_name=SMALL).sae_folder()
    assert not marker.exists()


def test_labels_are_fetched_once_and_kept_beside_the_sae(hub, no_network):
    put_goodfire_sae(hub, SMALL, goodfire_state())
    put_labels(hub, SMALL, '{"3": "friendly greeting", "7": {"label": "code"}}')
    assert GoodfireSAE(variant_name=SMALL).feature_labels() == {3: "friendly greeting", 7: "code"}
    shutil.rmtree(hub.root / f"datasets--{LABELS_REPO.replace('/', '--')}")  # the hub forgets them
    sae = GoodfireSAE(variant_name=SMALL)
    assert sae.feature_labels() == {3: "friendly greeting", 7: "code"}
    assert (sae.sae_folder() / "feature_labels.json").is_file() and no_network == []


@pytest.mark.parametrize("offline", ["hub offline", "download raises"])
def test_unreachable_labels_give_no_labels_and_one_warning_per_sae(offline, hub, no_network, monkeypatch, caplog):
    put_goodfire_sae(hub, SMALL, goodfire_state())
    if offline == "download raises":
        def unreachable(*args, **kwargs):
            raise ConnectionError("the hub cannot be reached")

        GoodfireSAE(variant_name=SMALL).sae_folder()  # the SAE itself is converted already
        monkeypatch.setattr("huggingface_hub.hf_hub_download", unreachable)
    with caplog.at_level(logging.WARNING, logger="interp_embed"):
        first, second = GoodfireSAE(variant_name=SMALL), GoodfireSAE(variant_name=SMALL)
        assert first.feature_labels() == {} and first.feature_labels() == {} and second.feature_labels() == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("has no feature labels" in w and LABELS_REPO in w for w in warnings)
    assert no_network == []


def test_quantize_without_cuda_is_refused_at_load_before_any_download(hub, no_network):
    sae = GoodfireSAE(variant_name=SMALL, device="cuda:0", quantize=True)  # constructing is fine anywhere
    # The hub cache is empty: had loading begun with a download, it would fail with the hub's error instead.
    with pytest.raises(RuntimeError, match=r"quantize=True loads the reader in 8 bits with bitsandbytes, which needs a "
                                           r"CUDA GPU.*this machine lacks it\. Use quantize=False"):
        sae.load()
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        Reader(ReaderSpec(model="meta-llama/Llama-3.1-8B-Instruct", layer=19), quantize=True)
    assert no_network == [] and not sae.is_loaded()


class LoaderSpy:
    """Records the keyword arguments of every ``AutoModelForCausalLM.from_pretrained`` call."""

    def __init__(self, monkeypatch, on_this_machine=lambda kwargs: kwargs):
        from transformers import AutoModelForCausalLM

        self.calls, self.real, self.adapt = [], AutoModelForCausalLM.from_pretrained, on_this_machine
        monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", self)

    def __call__(self, path, **kwargs):
        self.calls.append(kwargs)
        return self.real(path, **self.adapt(kwargs))


@pytest.mark.reader
def test_quantize_on_cuda_loads_the_truncated_reader_in_8_bits(hub, no_network, monkeypatch, tiny_model_dir):
    from transformers import BitsAndBytesConfig

    put_goodfire_sae(hub, SMALL, goodfire_state())
    put_reader(hub, SMALL, layers=32, tokenizer_dir=tiny_model_dir)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("transformers.utils.is_bitsandbytes_available", lambda: True)
    # This machine has neither a GPU nor bitsandbytes: the call is recorded, then the weights load unquantised here.
    spy = LoaderSpy(monkeypatch, lambda kwargs: {**kwargs, "quantization_config": None, "device_map": "cpu"})
    sae = GoodfireSAE(variant_name=SMALL, device={"model": "cuda:0", "sae": "cpu"}, quantize=True)
    reader, model, sae_device = sae.load()
    [call] = spy.calls
    assert isinstance(call["quantization_config"], BitsAndBytesConfig) and call["quantization_config"].load_in_8bit
    assert call["device_map"] == "cuda:0" and call["dtype"] == torch.bfloat16 and sae_device == "cpu"
    assert call["config"].num_hidden_layers == 20 and len(reader.model.model.layers) == 20  # blocks 0..19
    assert model.cfg.hook_layer == reader.spec.layer == 19 and no_network == []


@pytest.mark.reader
def test_device_auto_spreads_the_reader_and_encodes_as_one_device_does(hub, no_network, monkeypatch, tmp_path,
                                                                    tiny_model_dir):
    put_goodfire_sae(hub, SMALL, goodfire_state())
    put_reader(hub, SMALL, layers=32, tokenizer_dir=tiny_model_dir)
    spy = LoaderSpy(monkeypatch)
    texts = pd.DataFrame({"text": ["Good morning!", "Guten Morgen, wie geht es Ihnen heute?", "¡Hola!"]})
    plan = EncodePlan(window_tokens=64, window_overlap=8)
    spread = Dataset(texts, sae=GoodfireSAE(variant_name=SMALL, device="auto"), save_path=tmp_path / "a", plan=plan)
    single = Dataset(texts, sae=GoodfireSAE(variant_name=SMALL, device="cpu"), save_path=tmp_path / "b", plan=plan)
    assert [call["device_map"] for call in spy.calls] == ["auto", "cpu"]
    assert spread.latents().nnz > 0 and (spread.latents() != single.latents()).nnz == 0
    assert no_network == []

"""Shared fixtures: real text (the bundled sample of Debian fortunes), with synthetic activations or encoded once per
session by the real reader; a tiny random Llama; a process where torch cannot be imported."""
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from interp_embed import Dataset
from interp_embed.data import demo_sample
from interp_embed.saes import DefaultSAE
from interp_embed.spec.plan import EncodePlan
import fake_llm
from synthetic import synthetic_dataset


def pytest_collection_modifyitems(items):
    """Every test that runs a reader computes with torch: it is one of the ``numerics`` tests that
    ``make test-portable`` runs under another CPU's arithmetic."""
    for item in items:
        if item.get_closest_marker("reader"):
            item.add_marker(pytest.mark.numerics)


@pytest.fixture(scope="session")
def sample() -> pd.DataFrame:
    """60 real documents: 20 English, 20 German, 20 Spanish fortunes."""
    df = demo_sample()
    return pd.concat([df[df.language == lang].head(20) for lang in ("en", "de", "es")]).reset_index(drop=True)


@pytest.fixture(scope="session")
def synthetic(sample, tmp_path_factory) -> Dataset:
    """The sample with synthetic activations (no model; see synthetic.py), in chunks of a few documents."""
    return synthetic_dataset(tmp_path_factory.mktemp("stores") / "synthetic.iembed", sample, chunk_chars=1500)


@pytest.fixture(scope="session")
def sae() -> DefaultSAE:
    return DefaultSAE()


@pytest.fixture(scope="session")
def encoded(sample, sae, tmp_path_factory) -> Dataset:
    """The sample encoded by the bundled reader and the default SAE (about 15 s), in several chunks."""
    path = tmp_path_factory.mktemp("stores") / "sample.iembed"
    return Dataset(sample, sae=sae, save_path=path, plan=EncodePlan(chunk_tokens=500))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised 3-layer, 64-wide Llama with the bundled reader's tokenizer (no download)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from interp_embed.reading.reader import resolve_model_path
    from interp_embed.spec.reader import BUNDLED_READER

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED_READER))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder




# A finder that refuses torch and transformers. (sys.modules["torch"] = None would also break scipy, whose
# array-API layer looks torch up in sys.modules and expects a module or nothing.)
_REFUSE_TORCH = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError("this code must not import " + name)
sys.meta_path.insert(0, Refuse())
"""


def run_without_torch(script: str) -> str:
    """Run ``script`` in a fresh Python where importing torch or transformers fails; return its stdout."""
    code = _REFUSE_TORCH + textwrap.dedent(script) + """
assert not {"torch", "transformers"} & {name.split(".")[0] for name in sys.modules}, "torch got imported"
"""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join([os.path.dirname(__file__), *sys.path]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="session")
def llm_server() -> fake_llm.FakeLLM:
    """A chat-completions server on 127.0.0.1 (tests/fake_llm.py) for the whole session."""
    state, http = fake_llm.start()
    yield state
    http.shutdown()


@pytest.fixture
def llm(llm_server) -> fake_llm.FakeLLM:
    """The session's local chat-completions server, its script and records cleared for this test."""
    llm_server.script.clear()
    llm_server.requests.clear()
    llm_server.latency = llm_server.rate_429 = 0.0
    llm_server.echo = None
    return llm_server

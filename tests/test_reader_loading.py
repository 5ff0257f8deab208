"""Loading a reader: only the blocks up to the hooked one are read, quietly, and weights that did not load are named."""
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp_embed.reading.reader import Reader
from interp_embed.spec.reader import ReaderSpec

pytestmark = pytest.mark.reader


def test_blocks_after_the_hooked_one_are_never_read_and_nothing_is_reported(tiny_model_dir, monkeypatch, caplog, capfd):
    calls = []
    real = AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda path, **kw: calls.append(kw) or real(path, **kw))
    with caplog.at_level(logging.WARNING):
        reader = Reader(ReaderSpec(model=str(tiny_model_dir), layer=1, role="raw"), device="cpu")
    [call] = calls
    assert call["config"].num_hidden_layers == 2 and call["device_map"] == "cpu" and "quantization_config" not in call
    assert not any(".layers.2." in key for key in reader.model.state_dict()) and reader.device == "cpu"
    assert caplog.records == [] and "UNEXPECTED" not in capfd.readouterr().err  # the cut blocks are no news
    assert logging.getLogger("transformers.modeling_utils").filters == []  # transformers' report is heard again
    full = real(tiny_model_dir).eval()
    ids = torch.tensor([reader.document_tokens("Good morning, dear reader!").ids.tolist()])
    with torch.no_grad():
        torch.testing.assert_close(reader.forward(ids), full(ids, output_hidden_states=True).hidden_states[2])


def _copy_with(tiny_model_dir, folder, change):
    """The tiny model's folder with its weights changed by ``change(state)``."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def test_weights_missing_from_the_checkpoint_are_named(tiny_model_dir, tmp_path, caplog):
    _copy_with(tiny_model_dir, tmp_path, lambda state: state.pop("model.layers.0.mlp.up_proj.weight"))
    with caplog.at_level(logging.WARNING, logger="interp_embed"):
        Reader(ReaderSpec(model=str(tmp_path), layer=1, role="raw"), device="cpu")
    [warning] = [r.getMessage() for r in caplog.records if r.name.startswith("interp_embed")]
    assert "1 weights were not loaded" in warning and "model.layers.0.mlp.up_proj.weight" in warning


def test_a_load_that_fails_shows_transformers_report(tiny_model_dir, tmp_path, caplog):
    def wrong_shape(state):
        state["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 3)

    _copy_with(tiny_model_dir, tmp_path, wrong_shape)
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        Reader(ReaderSpec(model=str(tmp_path), layer=1, role="raw"), device="cpu")
    [report] = [r.getMessage() for r in caplog.records if r.name == "transformers.modeling_utils"]
    assert "LOAD REPORT" in report and "model.layers.0.mlp.up_proj.weight" in report
    assert logging.getLogger("transformers.modeling_utils").filters == []

"""Where an SAE meets a store it must be the store's encoder; models are loaded only to encode, and freed after."""
import gc
import json
import tempfile

import pandas as pd
import pytest
import torch

from interp_embed import Dataset
from interp_embed.architectures import SAEConfig, build_sae, save_sae
from interp_embed.saes import LocalSAE
from interp_embed.store import Store

pytestmark = pytest.mark.reader

TEXTS = ["Good morning, dear reader!", "Guten Morgen, lieber Leser!", "Buenos días, querido lector."]


def _random_sae(folder, model_dir, seed: int):
    torch.manual_seed(seed)
    sae = build_sae(SAEConfig(architecture="relu", d_in=64, d_sae=128, hook_layer=1, model_name=str(model_dir)))
    with torch.no_grad():
        sae.W_enc.normal_()
    return save_sae(sae, folder)


@pytest.fixture()
def saes(tiny_model_dir, tmp_path):
    return _random_sae(tmp_path / "a", tiny_model_dir, 0), _random_sae(tmp_path / "b", tiny_model_dir, 1)


def test_creating_a_store_reads_no_weights(saes, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("interp_embed.reading.reader.Reader.__init__", refuse)
    sae = LocalSAE(path=saes[0], role="raw")
    ds = Dataset(pd.DataFrame({"text": TEXTS}), sae=sae, save_path=tmp_path / "d.iembed", compute_activations=False)
    reader = ds._store.encoder.reader
    assert (reader.d_model, reader.layer, reader.role, ds.d_sae) == (64, 1, "raw", 128)
    assert ds._store.pending_rows().tolist() == [0, 1, 2] and not sae.is_loaded()


def test_models_loaded_for_an_operation_are_freed_after_it(saes, tmp_path):
    fresh = LocalSAE(path=saes[0], role="raw")
    Dataset(pd.DataFrame({"text": TEXTS}), sae=fresh, save_path=tmp_path / "a.iembed")
    assert not fresh.is_loaded()
    held = LocalSAE(path=saes[0], role="raw")
    held.load()  # the caller's models stay loaded: it may encode more
    ds = Dataset(pd.DataFrame({"text": TEXTS}), sae=held, save_path=tmp_path / "b.iembed")
    ds.features_of_text("Good evening!")
    assert held.is_loaded()


def test_a_dataset_and_its_views_hold_one_sae_loaded_once_and_freed_after(saes, tmp_path, monkeypatch):
    from interp_embed.encode import session

    path = tmp_path / "d.iembed"
    Dataset(pd.DataFrame({"text": TEXTS}), sae=LocalSAE(path=saes[0], role="raw"), save_path=path)
    sae = LocalSAE(path=saes[0], role="raw")
    ds = Dataset.load_from_file(path, sae=sae)
    early = ds[1:]  # taken before any model is loaded
    loads, loaded_models = [], session.loaded_models
    monkeypatch.setattr(session, "loaded_models", lambda sae: loads.append(sae.is_loaded()) or loaded_models(sae))
    with ds.models_loaded():
        late = early[[0]]  # a view of a view, taken inside the block
        assert ds._models is early._models is late._models and late.sae is sae and sae.is_loaded()
        early.latents_of_texts(["Good evening!"])
        late.features_of_text("Buenas noches.", max_coverage=1.0)
    assert loads.count(False) == 1  # loaded once, by the block: the views used its models
    assert not sae.is_loaded() and ds.sae is early.sae is late.sae is sae  # freed, and still the same SAE
    other = LocalSAE(path=saes[0], role="raw")
    late.sae = other  # the view gets a handle of its own; the one its parents share keeps its SAE
    assert late.sae is other and late[:1].sae is other and ds.sae is early.sae is sae


def test_an_sae_that_did_not_encode_the_store_is_refused(saes, tmp_path):
    path = tmp_path / "d.iembed"
    Dataset(pd.DataFrame({"text": TEXTS}), sae=LocalSAE(path=saes[0], role="raw"), save_path=path)
    other_weights, other_role = LocalSAE(path=saes[1], role="raw"), LocalSAE(path=saes[0], role="user")
    with pytest.raises(ValueError, match="encoded by another reader or SAE .*SAE weights"):
        Dataset.load_from_file(path, sae=other_weights)
    with pytest.raises(ValueError, match="role 'raw' vs 'user'"):
        Dataset.load_from_file(path, sae=other_role)
    ds = Dataset.load_from_file(path)
    ds.sae = other_weights  # set by hand: every use still checks
    with pytest.raises(ValueError, match="SAE weights"):
        ds.features_of_text("Good evening!")
    with pytest.raises(ValueError, match="SAE weights"):
        ds.search("Good evening!", by="example")
    same = Dataset.load_from_file(path, sae=LocalSAE(path=saes[0], role="raw"))
    assert 0 < len(same.features_of_text("Good evening!", max_coverage=1.0)) <= 5


def test_an_edited_sae_config_is_a_different_encoder(saes, tmp_path):
    path = tmp_path / "d.iembed"
    Dataset(pd.DataFrame({"text": TEXTS}), sae=LocalSAE(path=saes[0], role="raw"), save_path=path,
            compute_activations=False)
    cfg = saes[0] / "cfg.json"
    edited = json.loads(cfg.read_text())
    edited["metadata"]["hook_name"] = "blocks.0.hook_resid_post"  # the same weights read at another layer
    cfg.write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="layer 1 vs 0; SAE config: hook_layer 1 vs 0"):
        Dataset.load_from_file(path, resume=True, sae=LocalSAE(path=saes[0], role="raw"))
    assert Store.open(path).pending_rows().tolist() == [0, 1, 2]  # nothing was encoded with it


def test_a_dataset_without_save_path_leaves_nothing_behind(saes):
    ds = Dataset(pd.DataFrame({"text": TEXTS}), sae=LocalSAE(path=saes[0], role="raw"))
    path, view = ds.path, ds[1:]
    assert path.is_dir() and str(path).startswith(tempfile.gettempdir())
    del ds
    gc.collect()
    assert path.is_dir() and view.latents().shape[0] == 2  # a view still uses it
    del view
    gc.collect()
    assert not path.exists()

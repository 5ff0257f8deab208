"""Loading and analysing a saved store, and building configs, work in a process where torch and transformers
cannot be imported."""
from conftest import run_without_torch


def test_saved_store_is_usable_without_torch(synthetic):
    out = run_without_torch(f"""
        from interp_embed import Dataset
        ds = Dataset.load_from_file({str(synthetic.path)!r})
        latents = ds.latents("mean")
        feature = int(latents[0].indices[0])
        print(latents.shape, len(ds.top_documents_for_feature(feature, k=3)), ds[0].token_activations(feature)[:20])
        german = ds.pandas().language.eq("de").to_numpy()
        print(ds[german].latents("count").nnz > 0, len(ds.feature_labels()) >= 0)
        print(len(ds[german].diff(ds[~german])), len(ds.top_correlations(k=3)))
    """)
    assert f"({len(synthetic)}, {synthetic.d_sae})" in out


def test_configs_import_without_torch():
    out = run_without_torch("""
        import interp_embed, interp_embed.store
        from interp_embed.architectures.config import TopKConfig
        from interp_embed.spec.plan import EncodePlan
        from interp_embed.spec.reader import ReaderSpec
        import interp_embed.encode.config as public  # the spelling README shows
        from interp_embed.train import read_texts
        from interp_embed.train.config import HarvestConfig, TrainConfig
        print(TrainConfig(k=16).k, HarvestConfig(layer=3).layer, TopKConfig(d_in=8, d_sae=16, hook_layer=1, k=4).k,
              EncodePlan().chunk_tokens, ReaderSpec().layer,
              (public.EncodePlan, public.ReaderSpec) == (EncodePlan, ReaderSpec))
    """)
    assert out.split() == ["16", "3", "4", "24000", "15", "True"]

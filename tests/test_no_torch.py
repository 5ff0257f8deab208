"""Loading and analysing a saved store works in a process where torch and transformers cannot be imported."""
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
        import interp_embed.encode.config, interp_embed.store  # pure data, no torch
    """)
    assert f"({len(synthetic)}, {synthetic.d_sae})" in out

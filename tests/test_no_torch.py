"""Loading and analysing a saved store, and building configs, work in a process where torch and transformers
cannot be imported."""
import subprocess
import sys
import textwrap


def test_saved_store_is_usable_without_torch(encoded):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None          # any `import torch` now raises ImportError
        sys.modules["transformers"] = None
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch was importable")
        from interp_embed import Dataset
        ds = Dataset.load_from_file({str(encoded.path)!r})
        latents = ds.latents("mean")
        feature = int(latents[0].indices[0])
        print(latents.shape, len(ds.top_documents_for_feature(feature, k=3)), ds[0].token_activations(feature)[:20])
        print(ds[ds.pandas().language.eq("de").to_numpy()].latents("count").nnz > 0, len(ds.feature_labels()) >= 0)
        assert not any(name.startswith(("torch", "transformers")) and sys.modules[name] is not None
                       for name in sys.modules), "torch got imported"
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"({len(encoded)}, {encoded.d_sae})" in done.stdout


def test_configs_import_without_torch():
    script = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None
        sys.modules["transformers"] = None
        import interp_embed
        from interp_embed.architectures.config import TopKConfig
        from interp_embed.train.config import HarvestConfig, TrainConfig
        from interp_embed.train import read_texts
        print(TrainConfig(k=16).k, HarvestConfig(layer=3).layer, TopKConfig(d_in=8, d_sae=16, hook_layer=1, k=4).k)
        assert not any(name.startswith(("torch", "transformers")) and sys.modules[name] is not None
                       for name in sys.modules), "torch got imported"
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["16", "3", "4"]

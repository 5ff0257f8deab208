"""SAE architectures behind one registry, and SAELens' on-disk layout.

Each architecture is one registered class in one module: ``relu`` (SAELens' "standard"), ``topk``,
``jumprelu``, and ``batchtopk``, which is only trained and is saved as the JumpReLU SAE it is at inference.

>>> from interp_embed.architectures import load_sae
>>> sae = load_sae("path/to/sae")                    # doctest: +SKIP
>>> sae.encode(x), sae.encode_sparse(x)              # doctest: +SKIP

The configs are plain data and import without torch; the rest needs torch and is imported on first use.
"""
from ..lazy import lazy_exports
from .config import BatchTopKConfig, SAEConfig, TopKConfig

__all__ = ["SAEConfig", "TopKConfig", "BatchTopKConfig", "SparseAutoencoder", "SparseActivations",
           "register_architecture", "architectures", "build_sae", "load_sae", "save_sae"]

__getattr__ = lazy_exports(__name__, {
    "SparseAutoencoder": ".base", "SparseActivations": ".base", "register_architecture": ".base",
    "architectures": ".base", "build_sae": ".base", "load_sae": ".saelens", "save_sae": ".saelens",
})

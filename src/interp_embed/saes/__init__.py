"""SAE front doors (seed-compatible): ``DefaultSAE``, ``LocalSAE``, ``GoodfireSAE``."""
from .base import SAE
from .sources import DefaultSAE, GoodfireSAE, LocalSAE, sae_from_spec

__all__ = ["SAE", "DefaultSAE", "LocalSAE", "GoodfireSAE", "sae_from_spec"]

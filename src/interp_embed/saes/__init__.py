"""Where an SAE's files come from — the SAE classes of the original interp_embed API.

``DefaultSAE`` (the bundled reader and SAE), ``LocalSAE`` (a SAELens folder or hub release) and
``GoodfireSAE`` (Goodfire's Llama SAEs) each pair an SAE with its reader; the SAE architectures
themselves are in :mod:`interp_embed.architectures`.
"""
from .base import SAE
from .sources import DefaultSAE, GoodfireSAE, LocalSAE, sae_from_spec

__all__ = ["SAE", "DefaultSAE", "LocalSAE", "GoodfireSAE", "sae_from_spec"]

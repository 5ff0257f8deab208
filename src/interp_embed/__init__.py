"""interp_embed: interpretable sparse-autoencoder embeddings of text datasets."""
from .dataset import Dataset, DatasetRow
from .lazy import lazy_exports

__all__ = ["Dataset", "DatasetRow", "load_sae"]
__version__ = "0.2.0"

# load_sae needs torch, which analysing a saved dataset does not: it is imported on first use.
__getattr__ = lazy_exports(__name__, {"load_sae": ".architectures"})

"""interp_embed: interpretable sparse-autoencoder embeddings of text datasets."""
from .dataset import Dataset, DatasetRow

__all__ = ["Dataset", "DatasetRow"]
__version__ = "0.2.0"

"""Shared fixtures: real text (the bundled sample of Debian fortunes) encoded once per session."""
import numpy as np
import pandas as pd
import pytest

from interp_embed import Dataset
from interp_embed.cli import demo_sample
from interp_embed.saes import DefaultSAE


@pytest.fixture(scope="session")
def sample() -> pd.DataFrame:
    """60 real documents: 20 English, 20 German, 20 Spanish fortunes."""
    df = demo_sample()
    return pd.concat([df[df.language == lang].head(20) for lang in ("en", "de", "es")]).reset_index(drop=True)


@pytest.fixture(scope="session")
def sae() -> DefaultSAE:
    return DefaultSAE()


@pytest.fixture(scope="session")
def encoded(sample, sae, tmp_path_factory) -> Dataset:
    """The sample encoded with the default SAE, small chunks so that it spans several."""
    path = tmp_path_factory.mktemp("stores") / "sample.iembed"
    return Dataset(sample, sae=sae, save_path=path, chunk_chars=1500)


def token_matrix(row) -> np.ndarray:
    """Dense token × feature activations of one row (small documents only)."""
    return row.latents("all").toarray()

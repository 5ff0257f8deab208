"""The reader and SAE a dataset reads new text with: one handle, shared by a dataset and every view of it.

Lifetime rule (the only one): a handle is made when a dataset is created, loaded or concatenated, and every view
taken of that dataset (slices, masks, sorts, its rows) holds the same handle. Its SAE is the one given to the
dataset; without one it is rebuilt from the store's record on first use (the bundled default only, see
:func:`~interp_embed.encode.session.encoder_of`) and kept. Once chosen, the SAE is never replaced. The weights and
the reader are in memory only inside :meth:`Models.loaded` (or while a single text is encoded): the outermost block
loads them unless their owner had already, and frees them when it ends.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from . import session
from ..saes.base import SAE
from ..store import EncodedDocument, Store, StoreError


@dataclasses.dataclass(eq=False)
class Models:
    """The reader and SAE that encoded ``store``, chosen once and loaded only while text is read (see the module)."""

    store: Store
    """The store whose encoder record the SAE must match; it is checked against the record at every use."""
    sae: SAE | None = None
    """The SAE that encoded the store, or None until the first use rebuilds it from the store's record."""

    def encoder(self) -> SAE:
        """The SAE, checked against the store's record; rebuilt from the record on the first call if none was given."""
        if self.sae is None:
            self.sae = session.encoder_of(self.store)  # the one time it is set: from nothing to the store's own
        else:
            session.check_encoder(self.store, self.sae)
        return self.sae

    def known(self) -> bool:
        """Whether the SAE is known without asking: given, or the bundled default that the store records (the only
        one rebuilt from a record, see :func:`~interp_embed.encode.session.encoder_of`)."""
        try:
            self.encoder()
        except StoreError:
            return False
        return True

    @contextlib.contextmanager
    def loaded(self) -> Iterator[SAE]:
        """The SAE with its weights and reader in memory for the block; freed at its end if they were loaded here."""
        sae = self.encoder()
        with session.loaded_models(sae):
            yield sae

    def encode_text(self, text: str) -> EncodedDocument:
        """``text`` (not stored) encoded exactly as the store's documents were; the models are loaded for it unless
        a :meth:`loaded` block holds them."""
        return session.encode_text(self.store, self.encoder(), text)

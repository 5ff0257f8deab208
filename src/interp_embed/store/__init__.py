"""The on-disk dataset format (see store.py for the layout and the commit protocol)."""
from .chunk import EncodedDocument
from .errors import StoreCorruptError, StoreError
from .store import Store

__all__ = ["Store", "EncodedDocument", "StoreError", "StoreCorruptError"]

"""The on-disk dataset format (see store.py for the layout and the commit protocol)."""
from .chunk import EncodedDocument
from .errors import StoreCorruptError, StoreError, StoreLockedError
from .manifest import ChunkEntry, EncoderRecord, FileRecord, Manifest, ReaderRecord
from .pooling import AGGREGATIONS, PooledStatistics
from .store import Store
from .words import FeatureWords

__all__ = ["AGGREGATIONS", "ChunkEntry", "EncodedDocument", "EncoderRecord", "FeatureWords", "FileRecord", "Manifest",
           "PooledStatistics", "ReaderRecord", "Store", "StoreCorruptError", "StoreError", "StoreLockedError"]

"""The errors a store raises: each message names the file and says what to do."""


class StoreError(Exception):
    """A store cannot be used as it is; the message names the file and what to do."""


class StoreCorruptError(StoreError):
    """A file of a store is damaged (truncated, altered, missing): its data is never returned."""


class StoreLockedError(StoreError):
    """Another process is writing the store; only one writer at a time (readers never wait)."""

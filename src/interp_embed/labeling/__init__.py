"""Feature labels: offline labels from token statistics, and the driver that labels any SAE folder from a corpus."""
from .driver import label_codes, label_sae

__all__ = ["label_codes", "label_sae"]

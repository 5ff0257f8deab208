"""Feature labels: offline labels from token statistics (and the driver that labels any SAE folder from a
corpus), and labels written and scored by a language model over an OpenAI-compatible API."""
from .driver import label_codes, label_sae
from .llm import DEFAULT_MODEL, FeatureLabel, LabelingConfig, LabelingError, LabelScore, Usage, run_sync
from .run import describe_diff, label_feature, label_features, score_feature

__all__ = ["DEFAULT_MODEL", "FeatureLabel", "LabelScore", "LabelingConfig", "LabelingError", "Usage", "describe_diff",
           "label_codes", "label_feature", "label_features", "label_sae", "run_sync", "score_feature"]

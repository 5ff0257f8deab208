"""Analyses of SAE document embeddings: diffing, correlations, target association, clustering, retrieval, plots.

Pure numpy / scipy / pandas / scikit-learn / matplotlib: importing or running this package never imports
torch or transformers, so saved datasets can be analysed on machines without them.
"""
from .association import associate_features, fit_sparse_model
from .clustering import Clustering, cluster_documents, cluster_matrix, describe_clusters
from .correlations import correlate_presence, feature_correlations, npmi, top_correlations
from .diff import diff_counts, diff_features, diff_many
from .grouping import add_groups, one_row_per_group
from .label_search import match_features
from .plots import plot_clusters, plot_correlations, plot_diff, plot_trends
from .retrieval import search_documents
from .stats import (benjamini_hochberg, fisher_greater, fisher_two_sided, newcombe_interval, stratified_score_test,
                    welch_t_test, wilson_interval)
from .trend import feature_trends
from .where import where_mask

__all__ = [
    "Clustering", "add_groups", "associate_features", "benjamini_hochberg", "cluster_documents", "cluster_matrix",
    "correlate_presence", "describe_clusters", "diff_counts", "diff_features", "diff_many", "feature_correlations",
    "fisher_greater", "fisher_two_sided", "fit_sparse_model", "match_features", "newcombe_interval", "npmi", "one_row_per_group",
    "plot_clusters", "plot_correlations", "plot_diff", "plot_trends", "search_documents", "stratified_score_test",
    "top_correlations", "feature_trends", "welch_t_test", "where_mask", "wilson_interval",
]

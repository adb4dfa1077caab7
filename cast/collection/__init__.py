"""Auditing part discovery across a collection: many images segmented in batches, segment search by CAST's
own embeddings, the stability of each segment under small perturbations, statistics per level."""
from .build import Collection, CollectionItem, build_collection, segment_embeddings
from .search import SearchHit, SegmentIndex, similarity_map
from .stability import DEFAULT_PERTURBATIONS, Perturbation, stability_scores
from .stats import collection_figures, collection_scores

__all__ = [
    "DEFAULT_PERTURBATIONS", "Collection", "CollectionItem", "Perturbation", "SearchHit", "SegmentIndex",
    "build_collection", "collection_figures", "collection_scores", "segment_embeddings", "similarity_map",
    "stability_scores",
]  # fmt: skip

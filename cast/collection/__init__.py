"""Auditing part discovery across a collection: many images segmented in batches and saved in one folder
format that reopens, resumes and scales (`segment_collection`, `open_collection`); segment search by CAST's
own embeddings; the stability of each segment under small perturbations; statistics per level."""
from .build import CollectionItem, MemoryCollection, build_collection, segment_embeddings
from .format import CollectionError, CollectionSettings, ItemRecord
from .inputs import InputFiles, list_inputs
from .search import SearchHit, SegmentIndex, similarity_map
from .stability import DEFAULT_PERTURBATIONS, Perturbation, stability_scores
from .stats import collection_figures, collection_scores
from .store import Collection, is_collection, open_collection
from .writer import RunReport, finish_collection, segment_collection

__all__ = [
    "DEFAULT_PERTURBATIONS", "Collection", "CollectionError", "CollectionItem", "CollectionSettings", "InputFiles",
    "ItemRecord", "MemoryCollection", "Perturbation", "RunReport", "SearchHit", "SegmentIndex", "build_collection",
    "collection_figures", "collection_scores", "finish_collection", "is_collection", "list_inputs",
    "open_collection", "segment_collection", "segment_embeddings", "similarity_map", "stability_scores",
]  # fmt: skip

"""Approximate search for very large levels with FAISS (optional: `pip install cast-explorer[faiss]`).

Exact search reads the whole level matrix per query (N x C floats): at CAST-S width and a million segments
that is 1.5 GB and ~0.4 s on 2 cores, so levels whose matrix holds at least ANN_MIN_BYTES also get an
inverted-file index (faiss.IndexIVFFlat over unit vectors, inner product = cosine) when the collection is merged. A query
takes its candidates from it and rescores them exactly; per-image centring always searches exactly.
Recall and timings: benchmarks/bench_collection_scale.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ANN_MIN_BYTES = 512 * 2**20  # exact search over this much takes ~100 ms on 2 cores
NPROBE = 32


def wanted(vectors: np.ndarray) -> bool:
    """Whether a level matrix is large enough to get an approximate index (and FAISS is installed)."""
    return vectors.size * vectors.itemsize >= ANN_MIN_BYTES and available()


def available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def build_index(vectors: np.ndarray, norms: np.ndarray, *, seed: int = 0, chunk: int = 100_000):
    """An IVF index over the unit rows of `vectors` (row ids = row numbers)."""
    import faiss

    count, dim = vectors.shape
    lists = int(min(4096, max(16, np.sqrt(count))))
    sample = np.sort(np.random.default_rng(seed).choice(count, size=min(count, 40 * lists), replace=False))
    training = _unit(vectors[sample], norms[sample])
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.train(training)
    for start in range(0, count, chunk):
        index.add(_unit(vectors[start:start + chunk], norms[start:start + chunk]))
    index.nprobe = NPROBE
    return index


def save_index(index, path: Path) -> None:
    import faiss

    partial = path.with_name(f".{path.name}.partial")
    faiss.write_index(index, str(partial))
    partial.replace(path)


def load_index(path: Path):
    """The saved index (memory-mapped where FAISS can), or None when FAISS is not installed."""
    if not available():
        return None
    import faiss

    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    index.nprobe = NPROBE
    return index


def candidates(index, query: np.ndarray, count: int) -> np.ndarray:
    """Row numbers of up to `count` approximate nearest rows to `query` (any norm)."""
    unit = (query / max(float(np.linalg.norm(query)), 1e-12)).astype(np.float32)[None]
    _, rows = index.search(unit, int(count))
    rows = rows[0]
    return rows[rows >= 0]


def _unit(vectors: np.ndarray, norms: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(vectors, np.float32) / np.maximum(np.asarray(norms), 1e-12)[:, None])

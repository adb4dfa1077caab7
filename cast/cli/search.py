"""`cast search DIR --image NAME --level L --x X --y Y`: rank every segment of a level across an exported
collection (`cast segment ... --out DIR`) by cosine similarity of CAST's segment embeddings."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CastError
from .common import existing_dir, non_negative_int, positive_int

if TYPE_CHECKING:  # the library is imported inside the functions: `cast search --help` stays fast
    from ..collection.search import SearchHit, SegmentIndex


def load_index(out_dir: Path) -> tuple[SegmentIndex, list[dict[str, Any]]]:
    """The search index of an exported collection and its items (index order)."""
    import numpy as np

    from ..collection.search import SegmentIndex
    from ..export.collection import COLLECTION_DIR

    root = Path(out_dir) / COLLECTION_DIR
    items_file = root / "items.jsonl"
    if not items_file.is_file():
        raise CastError(f"{out_dir} is not an exported collection (no {COLLECTION_DIR}/items.jsonl): run `cast segment` first")
    items = [json.loads(line) for line in items_file.read_text().splitlines() if line.strip()]
    per_image = []
    for item in items:
        path = root / "embeddings" / f"{item['stem']}.npz"
        rows = []
        if path.is_file():
            with np.load(path) as arrays:
                level = 0
                while f"level{level}" in arrays:
                    rows.append((arrays[f"ids{level}"], arrays[f"level{level}"].astype(np.float32)))
                    level += 1
        per_image.append(rows)
    return SegmentIndex.from_arrays([item["name"] for item in items], per_image), items


def search_collection(out_dir: Path, image: str, level: int, x: float, y: float, top_k: int = 10) -> list[SearchHit]:
    """The segment under (x, y) of `image` (pixels of the original image) and its `top_k` best matches."""
    from ..hierarchy import Hierarchy

    index, items = load_index(out_dir)
    matches = [i for i, item in enumerate(items) if image in (item["name"], item["stem"])]
    if not matches:
        raise CastError(f"no image {image!r} in the collection {out_dir}")
    position = matches[0]
    hierarchy = Hierarchy.from_json((Path(out_dir) / items[position]["stem"] / "hierarchy.json").read_text())
    segment = hierarchy.segment_at_original(level, x, y)  # OutOfRangeError names the image
    return index.search(position, level, segment, top_k)


def _search_main(args: argparse.Namespace) -> int:
    hits = search_collection(args.collection, args.image, args.level, args.x, args.y, args.top_k)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=1))
        return 0
    print(f"{'rank':>4}  {'similarity':>10}  segment    image")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>4}  {hit.similarity:>10.4f}  L{hit.level}:s{hit.segment:02d}    {hit.image}")
    return 0


def add_search_command(subparsers: Any) -> None:
    """Register `search COLLECTION --image NAME --level L --x X --y Y [--top-k K]`."""
    parser = subparsers.add_parser("search", help="find similar segments across an exported collection",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("collection", type=existing_dir, help="the --out folder of `cast segment`")
    parser.add_argument("--image", required=True, help="file name (or stem) of the query image")
    parser.add_argument("--level", type=non_negative_int, default=2, help="hierarchy level (default 2: 32 segments)")
    parser.add_argument("--x", type=float, required=True, help="column of the query point, in the image's own pixels")
    parser.add_argument("--y", type=float, required=True, help="row of the query point, in the image's own pixels")
    parser.add_argument("--top-k", type=positive_int, default=10, help="matches to list (default 10)")
    parser.add_argument("--json", action="store_true", help="print the ranked records as JSON")
    parser.set_defaults(func=_search_main)

"""`cast search DIR --image NAME --level L --x X --y Y`: rank the segments of a level across a saved collection
(`cast segment ... --out DIR`) by cosine similarity of CAST's segment embeddings (cast.open_collection)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .common import existing_dir, non_negative_int, positive_int


def _search_main(args: argparse.Namespace) -> int:
    from ..collection import open_collection  # inside: `cast search --help` stays fast

    collection = open_collection(args.collection)
    index = collection.find(args.image)
    hits = collection.search(index, args.level, x=args.x, y=args.y, top_k=args.top_k,
                             include_query_image=args.include_query_image, centre=args.centre)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=1))
        return 0
    print(f"{'rank':>4}  {'similarity':>10}  segment    image")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:>4}  {hit.similarity:>10.4f}  L{hit.level}:s{hit.segment:02d}    {hit.image}")
    return 0


def add_search_command(subparsers: Any) -> None:
    """Register `search COLLECTION --image NAME --level L --x X --y Y [--top-k K]`."""
    parser = subparsers.add_parser("search", help="find similar segments across a saved collection",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("collection", type=existing_dir, help="the --out folder of `cast segment`")
    parser.add_argument("--image", required=True,
                        help="the query image as listed in the collection (a/img.jpg), or its file name if unique")
    parser.add_argument("--level", type=non_negative_int, default=2, help="hierarchy level (default 2: 32 segments)")
    parser.add_argument("--x", type=float, required=True, help="column of the query point, in the image's own pixels")
    parser.add_argument("--y", type=float, required=True, help="row of the query point, in the image's own pixels")
    parser.add_argument("--top-k", type=positive_int, default=10, help="records to list, the query first (default 10)")
    parser.add_argument("--include-query-image", action="store_true",
                        help="also rank the query image's own segments (by default only other images' are)")
    parser.add_argument("--centre", action="store_true",
                        help="subtract each image's mean segment embedding before the cosine")
    parser.add_argument("--json", action="store_true", help="print the ranked records as JSON")
    parser.set_defaults(func=_search_main)

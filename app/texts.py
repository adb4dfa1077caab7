"""What the app says, as Markdown: the honesty line, the segment panel, timings, scores. Pure functions."""
from __future__ import annotations

from typing import Any, Sequence

from cast.evaluation import LevelScore, best_level

from .session import ExplorerSession


def status_markdown(session: ExplorerSession | None, model_line: str) -> str:
    """The honesty line: which model (and what it was trained on) and which superpixels."""
    if session is None:
        return f"**Model:** {model_line}"
    prov = session.hierarchy.provenance
    if prov is None:
        return f"**Model:** {session.model_summary}"
    inp = prov.input
    parity = "official pipeline (parity)" if inp.parity_with_official else "NOT the official pipeline"
    grouping = "Grouping" if prov.is_vit else "Superpixels"
    if prov.decoded_scale > 1:
        parity += (f"; decoded at 1/{prov.decoded_scale} scale (JPEG DCT scaling): model-input pixels typically "
                   "within ±1 level of a full decode, not bit-identical")
    source = f"**Image:** {prov.source}  \n" if prov.source else ""
    return (
        f"**Model:** {session.model_summary}  \n"
        f"{source}"
        f"**{grouping}:** {prov.grouping.description} → {prov.grouping.count} segments  \n"
        f"**Input:** {inp.mode.replace('_', ' ')} at {inp.size}×{inp.size} — {parity}"
    )


def _probability(value: float | None) -> str:
    return "n/a (hard k-means assignment)" if value is None else f"{value:.3f}"


def segment_markdown(info: dict[str, Any], title: str = "Segment") -> list[str]:
    """Lines describing one segment record (its JSON form)."""
    x, y, w, h = info["bbox"]
    lines = [
        f"### {title} {info['id']}",
        f"- **level:** {info['level']} ({info['level_name']})",
        f"- **area:** {info['area']} px",
        f"- **bounding box (x, y, w, h):** {x}, {y}, {w}, {h}",
        f"- **children:** {len(info['children'])}",
    ]
    if info["parent"] is not None:
        lines.append(f"- **parent:** {info['parent']} (p = {_probability(info['parent_confidence'])})")
        if info["parent_confidence"] is not None:
            lines.append(f"- **runner-up parent:** {info['runner_up_parent']} (p = {info['runner_up_confidence']:.3f})")
    else:
        lines.append("- **parent:** the image (coarsest level)")
    if info.get("stability") is not None:
        lines.append(f"- **stability:** {info['stability']:.2f} (mean IoU under small perturbations)")
    return lines


def panel_markdown(session: ExplorerSession | None) -> str:
    """Details of the clicked segment (level, id, area, bbox, children, parent confidence) and top-5 classes."""
    if session is None:
        return "Segment an image, then click a segment."
    info = session.selected_info()
    lines = ["*Click a segment in the image to see its parents and children.*"] if info is None else segment_markdown(info)
    if session.top_classes:
        lines.append("### Top-5 ImageNet classes")
        lines += [f"{i}. {name} — {p:.1%}" for i, (name, p) in enumerate(session.top_classes, 1)]
    return "\n".join(lines)


def timings_markdown(session: ExplorerSession | None) -> str:
    if session is None:
        return ""
    return "**Timings:** " + " · ".join(f"{k} {v:.1f} ms" for k, v in session.timings().items())


def level_label(session: ExplorerSession | None, level: int) -> str:
    if session is None:
        return ""
    return f"Level {level}: {session.hierarchy.level_name(level)}"


def scores_markdown(columns: Sequence[tuple[str, Sequence[LevelScore]]]) -> str:
    """Per-level mean best-match IoU and boundary F of one or more hierarchies, side by side, best marked."""
    head = "| level | " + " | ".join(f"{name}: segments | IoU | boundary F" for name, _ in columns) + " |"
    rule = "|---|" + "---|---|---|" * len(columns)
    rows = []
    best = [best_level(scores).level for _, scores in columns]
    for i, score in enumerate(columns[0][1]):
        cells = []
        for (_, scores), top in zip(columns, best):
            s = scores[i]
            mark = " ★" if s.level == top else ""
            cells.append(f"{s.num_segments:g} | {s.mean_best_iou:.3f}{mark} | {s.boundary_f:.3f}")
        rows.append(f"| {score.level} | " + " | ".join(cells) + " |")
    footer = "; ".join(f"{name}: best level {top}" for (name, _), top in zip(columns, best))
    return "\n".join([head, rule, *rows, "", f"★ best level by mean best-match IoU — {footer}"])

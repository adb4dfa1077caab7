"""Plotly figures of the whole hierarchy: an icicle/sunburst and a node-link tree (networkx order)."""
from __future__ import annotations

import networkx as nx
import numpy as np
import plotly.graph_objects as go

from ..hierarchy import ROOT_ID, Hierarchy, node_id
from .overlays import PALETTE

FADED = "rgba(200,200,200,0.35)"


def _rgb(seg: int) -> str:
    r, g, b = PALETTE[(seg + 1) % len(PALETTE)]
    return f"rgb({r},{g},{b})"


def highlighted_nodes(hierarchy: Hierarchy, level: int, segment: int) -> tuple[list[str], list[str]]:
    """(path from the root to the selected node, descendant node ids) for a selection."""
    path = [node_id(lv, s) for lv, s in reversed(hierarchy.ancestors(level, segment))]
    path = [ROOT_ID, *path, node_id(level, segment)]
    below = [node_id(lv, s) for lv, s in hierarchy.descendants(level, segment)]
    return path, below


def partition_figure(
    hierarchy: Hierarchy,
    selected: tuple[int, int] | None = None,
    kind: str = "icicle",
    max_level_shown: int | None = None,
) -> go.Figure:
    """Icicle (or sunburst) of the hierarchy; values are pixel areas, so children sum to parents."""
    graph = hierarchy.graph
    min_level = 0 if max_level_shown is None else max(0, hierarchy.num_levels - 1 - max_level_shown)
    nodes = [n for n, d in graph.nodes(data=True) if d["level"] >= min_level]
    parents = [next(iter(graph.predecessors(n)), "") if n != ROOT_ID else "" for n in nodes]
    values = [graph.nodes[n]["area"] for n in nodes]
    labels = [n if n != ROOT_ID else "image" for n in nodes]
    focus: set[str] = set()
    if selected is not None:
        path, below = highlighted_nodes(hierarchy, *selected)
        focus = set(path) | set(below)
    colors = []
    for n in nodes:
        seg = graph.nodes[n].get("segment", 0)
        colors.append(_rgb(seg) if not focus or n in focus else FADED)
    hover = [
        f"{n}<br>area {graph.nodes[n]['area']} px" + (f"<br>parent p={graph.nodes[n]['confidence']:.2f}" if "confidence" in graph.nodes[n] else "")
        for n in nodes
    ]
    trace_cls = go.Icicle if kind == "icicle" else go.Sunburst
    trace = trace_cls(
        ids=nodes,
        labels=labels,
        parents=parents,
        values=values,
        branchvalues="total",
        marker=dict(colors=colors),
        hovertext=hover,
        hoverinfo="text",
        sort=False,
    )
    if kind == "icicle":
        trace.tiling = dict(orientation="v")
    fig = go.Figure(trace)
    title = "Hierarchy (area-proportional)"
    if selected is not None:
        title += f" — selected {node_id(*selected)}"
    fig.update_layout(title=title, margin=dict(l=4, r=4, t=36, b=4), height=360)
    return fig


def tree_layout(hierarchy: Hierarchy) -> dict[str, tuple[float, float]]:
    """Node positions: leaves in networkx DFS order along x, parents centred over their children, y = level."""
    graph = hierarchy.graph
    positions: dict[str, tuple[float, float]] = {}
    leaves = [n for n in nx.dfs_preorder_nodes(graph, ROOT_ID) if graph.out_degree(n) == 0]
    for i, leaf in enumerate(leaves):
        positions[leaf] = (float(i), float(graph.nodes[leaf]["level"]))
    for n in reversed(list(nx.topological_sort(graph))):
        if n not in positions:
            xs = [positions[c][0] for c in graph.successors(n)]
            positions[n] = (float(np.mean(xs)), float(graph.nodes[n]["level"]))
    return positions


def _segments_xy(pos: dict[str, tuple[float, float]], edges: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Line coordinates of many edges in one array each, NaN-separated (fast for Plotly)."""
    xy = np.full((len(edges) * 3, 2), np.nan)
    if edges:
        xy[0::3] = [pos[u] for u, _ in edges]
        xy[1::3] = [pos[v] for _, v in edges]
    return xy[:, 0], xy[:, 1]


def tree_figure(hierarchy: Hierarchy, selected: tuple[int, int] | None = None) -> go.Figure:
    """Node-link tree from the image root down to the superpixels, the selected path drawn bold.

    Nodes off the selection share one faded style, so the figure stays cheap to rebuild on a click.
    """
    graph = hierarchy.graph
    pos = tree_layout(hierarchy)
    path: list[str] = []
    below: set[str] = set()
    if selected is not None:
        path, below_list = highlighted_nodes(hierarchy, *selected)
        below = set(below_list)
    focus = set(path) | below
    path_edges = set(zip(path, path[1:]))
    inside = below | set(path[-1:])
    bold = [(u, v) for u, v in graph.edges if (u, v) in path_edges or (u in inside and v in below)]
    bold_set = set(bold)
    thin = [e for e in graph.edges if e not in bold_set]
    fig = go.Figure()
    tx, ty = _segments_xy(pos, thin)
    fig.add_trace(go.Scatter(x=tx, y=ty, mode="lines", line=dict(color="rgba(150,150,150,0.5)", width=1), hoverinfo="skip"))
    if bold:
        bx, by = _segments_xy(pos, bold)
        fig.add_trace(go.Scatter(x=bx, y=by, mode="lines", line=dict(color="black", width=3), hoverinfo="skip"))
    others = [n for n in graph.nodes if n not in focus] if focus else []
    shown = [n for n in graph.nodes if n in focus] if focus else list(graph.nodes)
    if others:
        xy = np.array([pos[n] for n in others])
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=dict(color=FADED, size=5),
                                 text=np.array(others, dtype=object), hovertemplate="%{text}<extra></extra>"))
    xy = np.array([pos[n] for n in shown])
    colors = [_rgb(graph.nodes[n].get("segment", 0)) for n in shown]
    sizes = np.array([14 if n in path else (7 if graph.nodes[n]["level"] > 0 else 4) for n in shown])
    fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=dict(color=colors, size=sizes),
                             text=np.array(shown, dtype=object), hovertemplate="%{text}<extra></extra>"))
    ticks = list(range(hierarchy.num_levels + 1))
    names = [hierarchy.level_name(lv) for lv in range(hierarchy.num_levels)] + ["image"]
    title = "Segment tree" + (f" — path to {node_id(*selected)}: " + " → ".join(path[1:]) if selected else "")
    fig.update_layout(
        title=dict(text=title, font=dict(size=13)),
        showlegend=False,
        height=360,
        margin=dict(l=4, r=4, t=36, b=4),
        xaxis=dict(visible=False),
        yaxis=dict(tickmode="array", tickvals=ticks, ticktext=names),
        plot_bgcolor="white",
    )
    return fig

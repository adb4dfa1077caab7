"""Plotly figures of the whole hierarchy: an icicle/sunburst and a node-link tree (networkx order)."""
from __future__ import annotations

import networkx as nx
import numpy as np
import plotly.graph_objects as go

from .hierarchy import ROOT_ID, Hierarchy, node_id
from .render import PALETTE

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


def tree_figure(hierarchy: Hierarchy, selected: tuple[int, int] | None = None) -> go.Figure:
    """Node-link tree from the image root down to the superpixels, the selected path drawn bold."""
    graph = hierarchy.graph
    pos = tree_layout(hierarchy)
    focus_path: list[str] = []
    below: set[str] = set()
    if selected is not None:
        focus_path, below_list = highlighted_nodes(hierarchy, *selected)
        below = set(below_list)
    path_edges = set(zip(focus_path, focus_path[1:]))
    ex, ey, hx, hy = [], [], [], []
    for u, v in graph.edges:
        xs, ys = (pos[u][0], pos[v][0], None), (pos[u][1], pos[v][1], None)
        if (u, v) in path_edges or (u in below or u in focus_path[-1:]) and v in below:
            hx.extend(xs), hy.extend(ys)
        else:
            ex.extend(xs), ey.extend(ys)
    nodes = list(graph.nodes)
    focus = set(focus_path) | below
    colors = [_rgb(graph.nodes[n].get("segment", 0)) if (not focus or n in focus) else FADED for n in nodes]
    sizes = [14 if n in focus_path else (7 if graph.nodes[n]["level"] > 0 else 4) for n in nodes]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="rgba(150,150,150,0.5)", width=1), hoverinfo="skip", name="tree"))
    if hx:
        fig.add_trace(go.Scatter(x=hx, y=hy, mode="lines", line=dict(color="black", width=3), hoverinfo="skip", name="selected path"))
    fig.add_trace(
        go.Scatter(
            x=[pos[n][0] for n in nodes],
            y=[pos[n][1] for n in nodes],
            mode="markers",
            marker=dict(color=colors, size=sizes, line=dict(color="black", width=[2 if n in focus_path else 0 for n in nodes])),
            text=nodes,
            customdata=nodes,
            hovertemplate="%{text}<extra></extra>",
            name="segments",
        )
    )
    ticks = list(range(hierarchy.num_levels + 1))
    names = [hierarchy.level_name(lv) for lv in range(hierarchy.num_levels)] + ["image"]
    title = "Segment tree" + (f" — path to {node_id(*selected)}: " + " → ".join(focus_path[1:]) if selected else "")
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

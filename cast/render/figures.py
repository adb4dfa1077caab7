"""Plotly figures of the whole hierarchy: an icicle/sunburst and a node-link tree (networkx order)."""
from __future__ import annotations

from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class FigureData:
    """What the two figures draw for one hierarchy, worked out once per image: a click only restyles it.

    Node order is the graph's (coarse to fine); positions come from `tree_layout`.
    """

    nodes: tuple[str, ...]
    parents: tuple[str, ...]
    areas: tuple[int, ...]
    colors: tuple[str, ...]
    hover: tuple[str, ...]
    levels: tuple[int, ...]
    positions: dict[str, tuple[float, float]]
    edges: tuple[tuple[str, str], ...]
    level_names: tuple[str, ...]


def figure_data(hierarchy: Hierarchy) -> FigureData:
    """Everything the figures need that does not depend on the selection."""
    graph = hierarchy.graph
    nodes = tuple(graph.nodes)
    attrs = [graph.nodes[n] for n in nodes]
    hover = tuple(
        f"{n}<br>area {a['area']} px" + (f"<br>parent p={a['confidence']:.2f}" if "confidence" in a else "")
        for n, a in zip(nodes, attrs)
    )
    return FigureData(
        nodes=nodes,
        parents=tuple(next(iter(graph.predecessors(n)), "") if n != ROOT_ID else "" for n in nodes),
        areas=tuple(int(a["area"]) for a in attrs),
        colors=tuple(_rgb(a.get("segment", 0)) for a in attrs),
        hover=hover,
        levels=tuple(int(a["level"]) for a in attrs),
        positions=tree_layout(hierarchy),
        edges=tuple(graph.edges),
        level_names=tuple(hierarchy.level_name(lv) for lv in range(hierarchy.num_levels)),
    )


def with_names(data: FigureData, names: dict[str, str]) -> FigureData:
    """The same figure data with a name (e.g. CLIP's, by node id `L4:s02`) on every named node's hover text."""
    hover = tuple(f"{h}<br><b>{names[n]}</b>" if n in names else h for n, h in zip(data.nodes, data.hover))
    return replace(data, hover=hover)


def _figure(traces: list[dict], layout: dict) -> go.Figure:
    """A Figure from plain dicts, skipping Plotly's per-value validation (the data are ours and known good)."""
    return go.Figure({"data": traces, "layout": layout}, _validate=False)


def partition_figure(
    hierarchy: Hierarchy,
    selected: tuple[int, int] | None = None,
    kind: str = "icicle",
    max_level_shown: int | None = None,
    data: FigureData | None = None,
) -> go.Figure:
    """Icicle (or sunburst) of the hierarchy; values are pixel areas, so children sum to parents."""
    data = data or figure_data(hierarchy)
    min_level = 0 if max_level_shown is None else max(0, hierarchy.num_levels - 1 - max_level_shown)
    keep = [i for i, lv in enumerate(data.levels) if lv >= min_level]
    focus: set[str] = set()
    if selected is not None:
        path, below = highlighted_nodes(hierarchy, *selected)
        focus = set(path) | set(below)
    nodes = [data.nodes[i] for i in keep]
    colors = [data.colors[i] if not focus or data.nodes[i] in focus else FADED for i in keep]
    trace = {
        "type": "icicle" if kind == "icicle" else "sunburst",
        "ids": nodes,
        "labels": [n if n != ROOT_ID else "image" for n in nodes],
        "parents": [data.parents[i] for i in keep],
        "values": [data.areas[i] for i in keep],
        "branchvalues": "total",
        "marker": {"colors": colors},
        "hovertext": [data.hover[i] for i in keep],
        "hoverinfo": "text",
        "sort": False,
    }
    if kind == "icicle":
        trace["tiling"] = {"orientation": "v"}
    title = "Hierarchy (area-proportional)" + (f" — selected {node_id(*selected)}" if selected is not None else "")
    return _figure([trace], {"title": {"text": title}, "margin": {"l": 4, "r": 4, "t": 36, "b": 4}, "height": 360})


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


def tree_figure(hierarchy: Hierarchy, selected: tuple[int, int] | None = None, data: FigureData | None = None) -> go.Figure:
    """Node-link tree from the image root down to the superpixels, the selected path drawn bold.

    Nodes off the selection share one faded style, so the figure stays cheap to rebuild on a click.
    """
    data = data or figure_data(hierarchy)
    pos = data.positions
    path: list[str] = []
    below: set[str] = set()
    if selected is not None:
        path, below_list = highlighted_nodes(hierarchy, *selected)
        below = set(below_list)
    focus = set(path) | below
    path_edges = set(zip(path, path[1:]))
    inside = below | set(path[-1:])
    bold = [(u, v) for u, v in data.edges if (u, v) in path_edges or (u in inside and v in below)]
    bold_set = set(bold)
    thin = [e for e in data.edges if e not in bold_set]
    tx, ty = _segments_xy(pos, thin)
    traces = [{"type": "scatter", "x": tx, "y": ty, "mode": "lines", "hoverinfo": "skip",
               "line": {"color": "rgba(150,150,150,0.5)", "width": 1}}]
    if bold:
        bx, by = _segments_xy(pos, bold)
        traces.append({"type": "scatter", "x": bx, "y": by, "mode": "lines", "hoverinfo": "skip",
                       "line": {"color": "black", "width": 3}})
    order = range(len(data.nodes))
    others = [i for i in order if data.nodes[i] not in focus] if focus else []
    shown = [i for i in order if data.nodes[i] in focus] if focus else list(order)
    if others:
        xy = np.array([pos[data.nodes[i]] for i in others])
        traces.append({"type": "scatter", "x": xy[:, 0], "y": xy[:, 1], "mode": "markers",
                       "marker": {"color": FADED, "size": 5}, "text": [data.hover[i] for i in others],
                       "hovertemplate": "%{text}<extra></extra>"})
    xy = np.array([pos[data.nodes[i]] for i in shown])
    sizes = [14 if data.nodes[i] in path else (7 if data.levels[i] > 0 else 4) for i in shown]
    traces.append({"type": "scatter", "x": xy[:, 0], "y": xy[:, 1], "mode": "markers",
                   "marker": {"color": [data.colors[i] for i in shown], "size": sizes},
                   "text": [data.hover[i] for i in shown], "hovertemplate": "%{text}<extra></extra>"})
    ticks = list(range(hierarchy.num_levels + 1))
    title = "Segment tree" + (f" — path to {node_id(*selected)}: " + " → ".join(path[1:]) if selected else "")
    layout = {
        "title": {"text": title, "font": {"size": 13}},
        "showlegend": False,
        "height": 360,
        "margin": {"l": 4, "r": 4, "t": 36, "b": 4},
        "xaxis": {"visible": False},
        "yaxis": {"tickmode": "array", "tickvals": ticks, "ticktext": [*data.level_names, "image"]},
        "plot_bgcolor": "white",
    }
    return _figure(traces, layout)

"""The KPI tree drawn as server-rendered SVG: North Star on top, the metrics that drive it below.
No script and no inline style (CSP): colours come from classes in the page's stylesheet, and
every string from the catalog or the registry is escaped."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

NODE_WIDTH, NODE_HEIGHT = 190, 64
GAP_X, GAP_Y = 22, 46
PAD = 10


def _leaves(node: dict[str, Any]) -> int:
    return max(1, sum(_leaves(child) for child in node["children"]))


def _depth(node: dict[str, Any]) -> int:
    return 1 + max((_depth(child) for child in node["children"]), default=0)


def _place(node: dict[str, Any], left: int, depth: int, out: list[tuple[dict[str, Any], float, float]]) -> float:
    """Lay out the subtree from column `left`; returns the node's centre x. Leaves take one
    column each and a parent sits centred over its children (a simple tidy tree)."""
    y = PAD + depth * (NODE_HEIGHT + GAP_Y)
    if not node["children"]:
        x = PAD + left * (NODE_WIDTH + GAP_X) + NODE_WIDTH / 2
    else:
        centres, column = [], left
        for child in node["children"]:
            centres.append(_place(child, column, depth + 1, out))
            column += _leaves(child)
        x = (centres[0] + centres[-1]) / 2
    out.append((node, x, y))
    return x


def _experiment_summary(node: dict[str, Any]) -> str:
    by_status = node["experiments"]
    if not by_status:
        return "no experiments"
    return " · ".join(f"{len(items)} {status}" for status, items in by_status.items())


def _box(node: dict[str, Any], x: float, y: float) -> str:
    left = x - NODE_WIDTH / 2
    name = escape(node["name"])
    kind = "north-star" if node["north_star"] else escape(node["status"])
    return "".join([
        f'<g class="node {kind}">',
        f'<rect x="{left:.1f}" y="{y:.1f}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="8"/>',
        f'<a href="/metrics/{name}"><text class="name" x="{x:.1f}" y="{y + 20:.1f}">{name}</text></a>',
        f'<text class="meta" x="{x:.1f}" y="{y + 37:.1f}">{escape(node["owner"])} · {escape(node["status"])}</text>',
        f'<a href="#node-{name}"><text class="meta link" x="{x:.1f}" y="{y + 54:.1f}">'
        f"{escape(_experiment_summary(node))}</text></a>",
        f"<title>{name}: {escape(node.get('description') or '')}</title>",
        "</g>",
    ])  # fmt: skip


def kpi_tree_svg(root: dict[str, Any]) -> Markup:
    placed: list[tuple[dict[str, Any], float, float]] = []
    _place(root, 0, 0, placed)
    width = 2 * PAD + _leaves(root) * (NODE_WIDTH + GAP_X) - GAP_X
    height = 2 * PAD + _depth(root) * (NODE_HEIGHT + GAP_Y) - GAP_Y
    where = {id(node): (x, y) for node, x, y in placed}
    parts = [f'<svg class="kpi-tree" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="KPI tree of {escape(root["name"])}">']  # fmt: skip
    for node, x, y in placed:  # edges first, so boxes cover their ends
        for child in node["children"]:
            cx, cy = where[id(child)]
            parts.append(f'<line class="edge" x1="{cx:.1f}" y1="{cy:.1f}" x2="{x:.1f}" y2="{y + NODE_HEIGHT:.1f}"/>')
    parts.extend(_box(node, x, y) for node, x, y in placed)
    parts.append("</svg>")
    return Markup("".join(parts))


def flatten(node: dict[str, Any], depth: int = 0) -> list[dict[str, Any]]:
    """Every node with its depth, parents before children (the table under the drawing)."""
    return [{**node, "depth": depth}, *(row for child in node["children"] for row in flatten(child, depth + 1))]

"""Checker for tree-math.json (RFC 9420 Appendix C; FORMAT.md "Tree Math")."""

from __future__ import annotations

from typing import Any, Callable

from mls import tree_math
from mls.errors import TreeMathError
from mls.vectors import expect


def _optional(relation: Callable[[], int]) -> int | None:
    """The relation's value, or None where the node has no such relative."""
    try:
        return relation()
    except TreeMathError:
        return None


def check(case: dict[str, Any]) -> None:
    """Verify node count, root and every node's left, right, parent and sibling."""
    n = case["n_leaves"]
    expect("n_nodes", tree_math.node_width(n), case["n_nodes"])
    expect("root", tree_math.root(n), case["root"])
    width = tree_math.node_width(n)
    for name, relation in (
        ("left", lambda x: tree_math.left(x)),
        ("right", lambda x: tree_math.right(x)),
        ("parent", lambda x: tree_math.parent(x, n)),
        ("sibling", lambda x: tree_math.sibling(x, n)),
    ):
        want = case[name]
        expect(f"len({name})", len(want), width)
        for x in range(width):
            expect(f"{name}[{x}]", _optional(lambda: relation(x)), want[x])

"""Array-based tree math for ratchet trees (RFC 9420 Appendix C, §4.1, §7.1).

Nodes of a tree with ``n_leaves`` leaves are numbered ``0 .. node_width(n_leaves) - 1``;
leaf ``i`` is node ``2*i`` and parents are odd. MLS trees are always full (§7.1:
``n_leaves`` is a power of two), which these functions require. Impossible relations
(a leaf's child, the root's parent, an index outside the tree) raise ``TreeMathError``.
"""

from __future__ import annotations

from mls.errors import TreeMathError


def log2(x: int) -> int:
    """The exponent of the largest power of 2 not above ``x`` (0 for 0)."""
    return x.bit_length() - 1 if x else 0


def level(x: int) -> int:
    """Level of node ``x``: leaves are 0, a parent is one above its children.

    The number of trailing one bits of ``x``.
    """
    return ((x ^ (x + 1)).bit_length()) - 1


def is_leaf(x: int) -> bool:
    """Whether node ``x`` is a leaf (even index)."""
    return x & 1 == 0


def leaf_to_node(leaf_index: int) -> int:
    """Node index of leaf ``leaf_index`` (``2*i``)."""
    return 2 * leaf_index


def node_to_leaf(x: int) -> int:
    """Leaf index of node ``x``; ``TreeMathError`` if ``x`` is a parent node."""
    if x & 1:
        raise TreeMathError(f"node {x} is not a leaf")
    return x >> 1


def node_width(n_leaves: int) -> int:
    """Number of nodes of a tree with ``n_leaves`` leaves: ``2*(n - 1) + 1``."""
    return 0 if n_leaves == 0 else 2 * (n_leaves - 1) + 1


def leaf_width(n_nodes: int) -> int:
    """Number of leaves of a tree with ``n_nodes`` nodes (inverse of ``node_width``)."""
    return (n_nodes + 1) // 2


def _check_tree(n_leaves: int) -> None:
    if n_leaves < 1 or n_leaves & (n_leaves - 1):
        raise TreeMathError(f"a ratchet tree has a power-of-two number of leaves, not {n_leaves}")


def _check_node(x: int, n_leaves: int) -> None:
    _check_tree(n_leaves)
    if not 0 <= x < node_width(n_leaves):
        raise TreeMathError(f"node {x} is outside a tree of {n_leaves} leaves")


def root(n_leaves: int) -> int:
    """Index of the root node of a tree with ``n_leaves`` leaves."""
    _check_tree(n_leaves)
    return (1 << log2(node_width(n_leaves))) - 1


def left(x: int) -> int:
    """Left child of parent node ``x``; ``TreeMathError`` for a leaf."""
    k = level(x)
    if k == 0:
        raise TreeMathError(f"leaf node {x} has no children")
    return x ^ (0x01 << (k - 1))


def right(x: int) -> int:
    """Right child of parent node ``x``; ``TreeMathError`` for a leaf."""
    k = level(x)
    if k == 0:
        raise TreeMathError(f"leaf node {x} has no children")
    return x ^ (0x03 << (k - 1))


def parent(x: int, n_leaves: int) -> int:
    """Parent of node ``x``; ``TreeMathError`` for the root."""
    _check_node(x, n_leaves)
    if x == root(n_leaves):
        raise TreeMathError("the root node has no parent")
    k = level(x)
    b = (x >> (k + 1)) & 0x01
    return (x | (1 << k)) ^ (b << (k + 1))


def sibling(x: int, n_leaves: int) -> int:
    """The other child of ``x``'s parent; ``TreeMathError`` for the root."""
    p = parent(x, n_leaves)
    return right(p) if x < p else left(p)


def direct_path(x: int, n_leaves: int) -> list[int]:
    """Direct path of node ``x``: its ancestors, from its parent up to the root (§4.1)."""
    _check_node(x, n_leaves)
    r = root(n_leaves)
    path: list[int] = []
    k = level(x)
    while x != r:  # the parent of x at level k, as in ``parent``
        x = (x | (1 << k)) ^ (((x >> (k + 1)) & 0x01) << (k + 1))
        k += 1
        path.append(x)
    return path


def copath(x: int, n_leaves: int) -> list[int]:
    """Copath of node ``x``: the siblings of ``x`` and of its ancestors below the root (§4.1)."""
    _check_node(x, n_leaves)
    r = root(n_leaves)
    result: list[int] = []
    k = level(x)
    while x != r:
        result.append(x ^ (0x02 << k))  # the sibling of a node at level k
        x = (x | (1 << k)) ^ (((x >> (k + 1)) & 0x01) << (k + 1))
        k += 1
    return result


def common_ancestor(x: int, y: int) -> int:
    """Lowest node whose subtree holds both nodes ``x`` and ``y`` (``common_ancestor_direct``)."""
    lx, ly = level(x) + 1, level(y) + 1
    if lx <= ly and x >> ly == y >> ly:
        return y
    if ly <= lx and x >> lx == y >> lx:
        return x
    xn, yn, k = x, y, 0
    while xn != yn:
        xn, yn, k = xn >> 1, yn >> 1, k + 1
    return (xn << k) + (1 << (k - 1)) - 1


def subtree_leaves(x: int) -> range:
    """Leaf indices under node ``x`` (the leaves whose direct paths include ``x``, or ``x`` itself)."""
    half = (1 << level(x)) - 1
    return range((x - half) >> 1, ((x + half) >> 1) + 1)


def subtree_nodes(x: int) -> tuple[int, int]:
    """``(start, stop)``: the subtree of node ``x`` is the nodes ``start .. stop - 1``."""
    half = (1 << level(x)) - 1
    return x - half, x + half + 1


def is_in_subtree(x: int, ancestor: int) -> bool:
    """Whether node ``x`` is ``ancestor`` or lies below it."""
    half = (1 << level(ancestor)) - 1
    return ancestor - half <= x <= ancestor + half

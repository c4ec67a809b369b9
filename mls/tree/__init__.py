"""The ratchet tree and TreeKEM (RFC 9420 §4, §7, §12.4.3.1), sans-I/O.

* ``RatchetTree``: the public tree (array form, cached tree hashes, Add /
  Update / Remove, resolution, filtered direct path, parent hashes,
  ``ratchet_tree`` extension (de)serialization).
* ``validate_leaf_node`` / ``validate_ratchet_tree``: §7.3 and §12.4.3.1.
* ``create_update_path`` / ``apply_update_path`` / ``decrypt_update_path``
  and the private view ``TreeKEMPrivate``: TreeKEM (§7.4-§7.6).
"""

from __future__ import annotations

from mls.tree.ratchet_tree import NodeValue, RatchetTree
from mls.tree.treekem import (
    DecryptedPath,
    PendingUpdatePath,
    TreeKEMPrivate,
    apply_update_path,
    create_update_path,
    decrypt_update_path,
    derive_node_key_pair,
)
from mls.tree.validation import (
    DEFAULT_EXTENSION_TYPES,
    check_leaf_node_content,
    leaf_node_tbs,
    sign_leaf_node,
    validate_leaf_node,
    validate_ratchet_tree,
    verify_leaf_signature,
    verify_leaf_signatures,
    verify_parent_hashes,
)

__all__ = [
    "DEFAULT_EXTENSION_TYPES",
    "DecryptedPath",
    "check_leaf_node_content",
    "NodeValue",
    "PendingUpdatePath",
    "RatchetTree",
    "TreeKEMPrivate",
    "apply_update_path",
    "create_update_path",
    "decrypt_update_path",
    "derive_node_key_pair",
    "leaf_node_tbs",
    "sign_leaf_node",
    "validate_leaf_node",
    "validate_ratchet_tree",
    "verify_leaf_signature",
    "verify_leaf_signatures",
    "verify_parent_hashes",
]

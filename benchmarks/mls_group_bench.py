"""MLS Commit cost against group size: create (add one member) and process, 10 / 100 / 1000 members.

A Commit with an UpdatePath encrypts one path secret per node of the
committer's copath resolution (RFC 9420 §7.6), so in a group whose tree is
populated (as it becomes once members have committed) the cost grows with
log(n), not n. The benchmark builds such a tree directly for each size
(every parent node keyed, suite 1): member 0 commits an Add of a new
KeyPackage (no ratchet tree in the Welcome: trees are O(n) bytes and are
sent apart) and the last member processes it, through the engine
(``mls.group``), without storage. Prints the median milliseconds per size, the
ratio 1000/10 and the linear baseline ratio (100).
Run: ``python benchmarks/mls_group_bench.py [repeats] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench_json import figure, write_figures  # noqa: E402
from mls import tree_math  # noqa: E402
from mls.crypto import cipher_suite  # noqa: E402
from mls.group import engine  # noqa: E402
from mls.group.commit import create_commit  # noqa: E402
from mls.group.config import GroupConfig  # noqa: E402
from mls.group.key_package import create_key_package  # noqa: E402
from mls.group.state import GroupState  # noqa: E402
from mls.key_schedule import EpochSecrets  # noqa: E402
from mls.secret_tree import SecretTree  # noqa: E402
from mls.transcript import interim_transcript_hash  # noqa: E402
from mls.tree import RatchetTree, TreeKEMPrivate  # noqa: E402
from mls.wire import Add, Credential, GroupContext, ParentNode, Proposal  # noqa: E402

SUITE = cipher_suite(1)
CONFIG = GroupConfig(ratchet_tree_in_welcome=False, ratchet_tree_in_group_info=False, past_epochs=0)


def _member_state(
    tree: RatchetTree, leaf: int, keys: dict[int, bytes], signature_keys: dict[int, bytes], context: GroupContext, joiner: bytes
) -> GroupState:
    """Member ``leaf``'s view: its leaf and direct-path private keys, shared epoch secrets."""
    private = TreeKEMPrivate(leaf)
    for node in [2 * leaf, *tree_math.direct_path(2 * leaf, tree.leaf_count)]:
        value = tree.node(node)
        if value is not None:
            private.set_key(node, keys[node], value.encryption_key)
    secrets = EpochSecrets.from_joiner_secret(SUITE, joiner, None, context.encode())
    tag = secrets.confirmation_tag(context.confirmed_transcript_hash)
    return GroupState(
        suite=SUITE,
        context=context,
        tree=tree.copy(),
        private=private,
        signature_private_key=signature_keys[leaf],
        secrets=secrets,
        interim_transcript_hash=interim_transcript_hash(SUITE, context.confirmed_transcript_hash, tag),
        confirmation_tag=tag,
        secret_tree=SecretTree(SUITE, secrets.encryption_secret, tree.leaf_count),
    )


def build_group(n: int) -> tuple[GroupState, GroupState]:
    """States of member 0 and member n-1 in an n-member group whose parent nodes all hold keys."""
    keys: dict[int, bytes] = {}
    signature_keys: dict[int, bytes] = {}
    leaves = []
    for i in range(n):
        signature_private, signature_public = SUITE.generate_signature_key_pair()
        bundle = create_key_package(SUITE, signature_private, signature_public, Credential.basic(b"m%d" % i), CONFIG)
        leaves.append(bundle.key_package.leaf_node)
        keys[2 * i] = bundle.encryption_private_key
        signature_keys[i] = signature_private
    tree = RatchetTree(SUITE, [leaves[x // 2] if x % 2 == 0 else None for x in range(2 * n - 1)])
    for node in range(1, tree.node_count, 2):
        if any(leaf < n for leaf in tree_math.subtree_leaves(node)):
            private_key, public_key = SUITE.generate_key_pair()
            keys[node] = private_key
            tree.set_parent(node, ParentNode(public_key, b"", ()))
    context = GroupContext(SUITE.suite_id, os.urandom(32), 7, tree.tree_hash(), os.urandom(32))
    joiner = os.urandom(SUITE.Nh)
    return (
        _member_state(tree, 0, keys, signature_keys, context, joiner),
        _member_state(tree, n - 1, keys, signature_keys, context, joiner),
    )


def measure(n: int, repeats: int) -> tuple[float, float]:
    """Median ms of (create an Add commit, process it) for an n-member group."""
    committer, receiver = build_group(n)
    signature_private, signature_public = SUITE.generate_signature_key_pair()
    create_times, process_times = [], []
    for _ in range(repeats):
        key_package = create_key_package(SUITE, signature_private, signature_public, Credential.basic(b"new"), CONFIG)
        committer.pending = None
        start = time.perf_counter()
        pending = create_commit(committer, CONFIG, by_value=[Proposal(Add(key_package.key_package))])
        create_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = engine.receive(receiver, pending.message, CONFIG)
        process_times.append(time.perf_counter() - start)
        assert result.state.secrets.epoch_authenticator == pending.next_state.secrets.epoch_authenticator
    return statistics.median(create_times) * 1e3, statistics.median(process_times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repeats", type=int, nargs="?", default=15)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    repeats = args.repeats
    sizes = (10, 100, 1000)
    results = {n: measure(n, repeats) for n in sizes}
    print("MLS Commit (Add one member, with UpdatePath), suite 1, median of", repeats)
    print(f"{'members':>8} {'create ms':>10} {'process ms':>11}")
    for n in sizes:
        print(f"{n:>8} {results[n][0]:>10.2f} {results[n][1]:>11.2f}")
    figures = []
    for index, name in enumerate(("create", "process")):
        ratio = results[1000][index] / results[10][index]
        print(f"{name}: 1000/10 ratio {ratio:.2f} (linear baseline 100; log2 ratio {1000 .bit_length() / 10 .bit_length():.1f})")
        figures.append(figure(f"commit {name} at 1000 members", "ms", results[1000][index],
                              results[10][index] * 100, "10 members x 100 (linear growth)"))
    write_figures(args.json, "mls_group_bench", figures)


if __name__ == "__main__":
    main()

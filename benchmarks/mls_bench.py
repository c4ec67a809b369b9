"""MLS application message cost: PrivateMessage protect + unprotect, µs per message.

Two members' views of one suite-1 epoch (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519)
built from the same encryption secret; leaf 1 sends a 100-byte payload as an
MLSMessage(PrivateMessage) and leaf 0 decodes, decrypts and verifies it. Each
message covers: Ed25519 signature of FramedContentTBS, the ratchet step, two
AES-GCM seals, two sender-data key derivations, two AES-GCM opens, signature
verification, and the MLSMessage encode/decode. Prints the median over many
messages, the target (100 µs) and the mls-rs reference (about 170 µs through its
Python bindings on this machine; a reference figure measured elsewhere, not
re-run here because mls-rs is not installable), with ratios against both.
Also prints the Ed25519 sign + verify floor alone.
Run: ``python benchmarks/mls_bench.py [messages] [--json PATH]``.
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
from mls.crypto import cipher_suite  # noqa: E402
from mls.message_protection import MessageProtection  # noqa: E402
from mls.secret_tree import SecretTree  # noqa: E402
from mls.wire.framing import FramedContent, PrivateMessage, Sender  # noqa: E402
from mls.wire.group_context import GroupContext  # noqa: E402
from mls.wire.messages import MLSMessage  # noqa: E402

TARGET_US = 100.0
MLS_RS_REFERENCE_US = 170.0
PAYLOAD = 100
WARMUP = 500


def _views() -> tuple[MessageProtection, MessageProtection, bytes, bytes]:
    suite = cipher_suite(1)
    context = GroupContext(1, os.urandom(16), 42, os.urandom(32), os.urandom(32))
    encryption_secret, sender_data_secret, membership_key = os.urandom(32), os.urandom(32), os.urandom(32)
    signature_priv, signature_pub = suite.generate_signature_key_pair()

    def view() -> MessageProtection:
        return MessageProtection(
            suite,
            context,
            secret_tree=SecretTree(suite, encryption_secret, 2),
            sender_data_secret=sender_data_secret,
            membership_key=membership_key,
        )

    return view(), view(), signature_priv, signature_pub


def measure(messages: int) -> list[float]:
    """µs of each protect + encode + decode + unprotect, one message at a time."""
    sender, receiver, signature_priv, signature_pub = _views()
    group_id, epoch = sender.group_context.group_id, sender.group_context.epoch
    payload = os.urandom(PAYLOAD)
    sender_leaf = Sender.member(1)

    def key_of(leaf_index: int) -> bytes | None:
        return signature_pub if leaf_index == 1 else None

    protect, unprotect, clock = sender.protect_private, receiver.unprotect_private, time.perf_counter_ns
    samples = []
    for index in range(WARMUP + messages):
        start = clock()
        content = FramedContent(group_id, epoch, sender_leaf, b"", payload)
        wire = MLSMessage(protect(content, signature_priv)).encode()
        message = MLSMessage.decode(wire).body
        assert isinstance(message, PrivateMessage)
        received = unprotect(message, key_of)
        elapsed = clock() - start
        if received.content.body != payload:
            raise SystemExit("round trip returned a different payload")
        if index >= WARMUP:
            samples.append(elapsed / 1000)
    return samples


def signature_floor(messages: int) -> float:
    """Median µs of one Ed25519 SignWithLabel + VerifyWithLabel on a TBS-sized input."""
    suite = cipher_suite(1)
    priv, pub = suite.generate_signature_key_pair()
    tbs = os.urandom(PAYLOAD + 120)
    clock, samples = time.perf_counter_ns, []
    for _ in range(messages):
        start = clock()
        suite.verify_with_label(pub, b"FramedContentTBS", tbs, suite.sign_with_label(priv, b"FramedContentTBS", tbs))
        samples.append((clock() - start) / 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", type=int, nargs="?", default=20_000)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    messages = args.messages
    samples = measure(messages)
    median = statistics.median(samples)
    floor = signature_floor(min(messages, 5000))
    print(f"MLS PrivateMessage application message, suite 1, {PAYLOAD}-byte payload, {messages} messages")
    print(f"  protect+unprotect median:        {median:8.1f} µs/message (p10 {_quantile(samples, 0.1):.1f}, "
          f"p90 {_quantile(samples, 0.9):.1f})")
    print(f"  of which Ed25519 sign+verify:    {floor:8.1f} µs (median, measured alone)")
    print(f"  target:                          {TARGET_US:8.1f} µs   ratio {median / TARGET_US:.2f}")
    print("  mls-rs reference (its Python bindings; a reference figure, not run here):")
    print(f"{'':35}{MLS_RS_REFERENCE_US:8.1f} µs   ratio {median / MLS_RS_REFERENCE_US:.2f}")
    write_figures(args.json, "mls_bench", [
        figure("PrivateMessage protect+unprotect (median)", "µs", median, TARGET_US, "target"),
        figure("PrivateMessage protect+unprotect (median)", "µs", median, MLS_RS_REFERENCE_US,
               "mls-rs reference (not run here)"),
    ])


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[int(q * (len(ordered) - 1))]


if __name__ == "__main__":
    main()

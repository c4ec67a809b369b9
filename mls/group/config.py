"""Per-client group policy: wire formats, retention of past epochs, lifetimes, clock.

Nothing here is persisted with a group: a restarted process passes its own
``GroupConfig`` and the stored state follows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mls.crypto.signature import BatchVerifier, verify_serially
from mls.key_schedule import EpochSecrets
from mls.secret_tree import SecretTree
from mls.wire.enums import WireFormat

__all__ = ["DEFAULT_KEY_PACKAGE_LIFETIME", "KEY_PACKAGE_BACKDATE", "GroupConfig", "system_clock"]

#: KeyPackages we generate last 90 days (§10, §7.2 Lifetime).
DEFAULT_KEY_PACKAGE_LIFETIME = 90 * 24 * 3600
#: ... and start one hour in the past: peers with a slow clock (ts-mls rejects
#: a not-yet-valid leaf) still accept them.
KEY_PACKAGE_BACKDATE = 3600


def system_clock() -> int:
    """Seconds since the Unix epoch, from the system clock."""
    return int(time.time())


@dataclass(frozen=True)
class GroupConfig:
    """Policy knobs of the group engine.

    * ``handshake_wire_format``: Proposals and Commits go out as PublicMessage
      by default, so a delivery service can read epoch and content type to
      sequence Commits (§6.2, §14); ``MLS_PRIVATE_MESSAGE`` hides them.
      Application data is always a PrivateMessage (§6).
    * ``past_epochs``: how many previous epochs keep their secret tree to
      decrypt late application messages (§15.3, default 4).
    * ``resumption_epochs``: how many epochs' ``resumption_psk`` are kept (§8.6).
    * ``ratchet_tree_in_welcome`` / ``ratchet_tree_in_group_info``: include the
      ``ratchet_tree`` extension (§12.4.3.3); ``external_pub``: include the
      ``external_pub`` extension in GroupInfos we publish (§12.4.3.2).
    * ``always_path``: send an UpdatePath even when no proposal requires one.
    * ``clock``: seconds since the epoch; ``None`` from it disables lifetime
      checks (e.g. old test vectors). ``check_received_lifetimes``: check
      lifetimes of received leaves too (RECOMMENDED by §7.3).
    * ``verify_batch``: verifies many signatures at once (a joined ratchet
      tree's leaves, §12.4.3.1; a Commit's KeyPackages): called as
      ``verify_batch(verify, checks)``, it returns ``[verify(c) for c in checks]``
      in order and may run ``verify`` concurrently, e.g. on a thread pool the
      application owns (OpenSSL releases the GIL while verifying).
      ``verify_serially`` (the default) checks one after the other.
    * ``max_past_generations`` / ``max_forward_generations``: out-of-order
      window of each sender ratchet (§9, §15.3).
    * ``padding_block``: pad PrivateMessage content to a multiple (§6.3.1).
    * ``commit_received_proposals``: ``receive`` of another member's proposal
      answers with a Commit of the pending proposals, as the MLS Web API
      explainer's ``proposeAdd`` describes (default True).
    """

    handshake_wire_format: WireFormat = WireFormat.MLS_PUBLIC_MESSAGE
    past_epochs: int = 4
    resumption_epochs: int = 8
    ratchet_tree_in_welcome: bool = True
    ratchet_tree_in_group_info: bool = True
    external_pub: bool = True
    always_path: bool = True
    clock: Callable[[], int | None] = field(default=system_clock, compare=False)
    check_received_lifetimes: bool = True
    verify_batch: BatchVerifier = field(default=verify_serially, compare=False)
    key_package_lifetime: int = DEFAULT_KEY_PACKAGE_LIFETIME
    key_package_backdate: int = KEY_PACKAGE_BACKDATE
    max_past_generations: int = 10
    max_forward_generations: int = 1000
    padding_block: int = 0
    commit_received_proposals: bool = True

    def now(self) -> int | None:
        """The current time for lifetime checks of leaves we create or accept."""
        return self.clock()

    def received_now(self) -> int | None:
        """The time used to check lifetimes of received leaves, or None to skip."""
        return self.clock() if self.check_received_lifetimes else None

    def secret_tree(self, secrets: EpochSecrets, n_leaves: int) -> SecretTree:
        """An epoch's secret tree (§9) with this config's out-of-order window (§15.3)."""
        return SecretTree(
            secrets.suite,
            secrets.encryption_secret,
            n_leaves,
            max_past=self.max_past_generations,
            max_forward=self.max_forward_generations,
        )

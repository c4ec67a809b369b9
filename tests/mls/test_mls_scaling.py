"""Commits scale with proposals and joins with members (RFC 9420 §12.1, §12.2, §12.4, §12.4.3.1).

No timings: signature verifications are counted (the suite's VerifyWithLabel
is wrapped), so a proposal is seen to be verified once, when it enters the
cache, and never again when a Commit covers it; the incremental selection
still leaves out a cached proposal that conflicts with those before it
(§12.4 SHOULD); a batch verifier backed by a thread pool the test owns gives
the serial results and still refuses a forged leaf with a typed error.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pytest

from mls.crypto import CipherSuite, cipher_suite
from mls.crypto.signature import SignatureCheck
from mls.errors import CryptoError, MLSError, SignatureError
from mls.group import engine
from mls.group.commit import create_commit
from mls.group.config import GroupConfig
from mls.group.proposals import ProposalEntry, apply_proposals
from mls.group.key_package import KeyPackageBundle, create_key_package, create_leaf_node, key_package_ref
from mls.group.state import GroupState
from mls.group.welcome import JoinKeys, join_from_welcome
from mls.wire import Credential, MLSMessage, Proposal
from mls.wire.framing import PublicMessage, Sender
from mls.wire.proposals import Add, Commit, GroupContextExtensions, ReInit, Remove
from mls.wire.welcome import Welcome

SUITE = cipher_suite(1)
CONFIG = GroupConfig()
KP_LABEL = b"KeyPackageTBS"
LEAF_LABEL = b"LeafNodeTBS"


@dataclass
class Client:
    """A signature key pair and credential: one client, possibly with several KeyPackages."""

    name: bytes
    signature_private_key: bytes
    signature_key: bytes

    @classmethod
    def new(cls, name: str) -> Client:
        private, public = SUITE.generate_signature_key_pair()
        return cls(name.encode(), private, public)

    def key_package(self) -> KeyPackageBundle:
        return create_key_package(SUITE, self.signature_private_key, self.signature_key, Credential.basic(self.name), CONFIG)

    def join_keys(self, bundle: KeyPackageBundle) -> JoinKeys:
        return JoinKeys(bundle.key_package, bundle.init_private_key, bundle.encryption_private_key, self.signature_private_key)


def _create(client: Client) -> GroupState:
    leaf, encryption_private_key = create_leaf_node(
        SUITE, client.signature_private_key, client.signature_key, Credential.basic(client.name), CONFIG
    )
    return engine.create_group(SUITE, client.signature_private_key, leaf, encryption_private_key, CONFIG)


def _finder(keys: JoinKeys) -> Callable[[bytes], JoinKeys | None]:
    ref = key_package_ref(SUITE, keys.key_package)
    return lambda wanted: keys if wanted == ref else None


def _welcome(data: bytes) -> Welcome:
    body = MLSMessage.decode(data).body
    assert isinstance(body, Welcome)
    return body


def _group(n: int, config: GroupConfig = CONFIG, joiners: int | None = None) -> tuple[GroupState, list[GroupState]]:
    """Member 0's state and the states of the first ``joiners`` others of an n-member group."""
    creator = _create(Client.new("member 0"))
    clients = [Client.new(f"member {k}") for k in range(1, n)]
    bundles = [client.key_package() for client in clients]
    pending = create_commit(creator, CONFIG, by_value=[Proposal(Add(b.key_package)) for b in bundles], force_path=False)
    creator = engine.apply_pending_commit(creator, CONFIG)
    assert pending.welcome is not None
    welcome = _welcome(pending.welcome)
    count = len(clients) if joiners is None else joiners
    others = [
        join_from_welcome(welcome, _finder(client.join_keys(bundle)), config).state
        for client, bundle in list(zip(clients, bundles))[:count]
    ]
    return creator, others


def _listed(commit_message: bytes) -> list[bytes | Proposal]:
    """The ProposalOrRef bodies of a PublicMessage Commit, in order."""
    public = MLSMessage.decode(commit_message).body
    assert isinstance(public, PublicMessage) and isinstance(public.content.body, Commit)
    return [item.body for item in public.content.body.proposals]


def _deliver(message: bytes, states: Sequence[GroupState]) -> list[GroupState]:
    return [engine.receive(state, message, CONFIG).state for state in states]


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[bytes]]:
    """Signatures verified per label (``KeyPackageTBS``, ``LeafNodeTBS``, ...), serially or in batches."""
    counts: Counter[bytes] = Counter()
    one, many = CipherSuite.verify_with_label, CipherSuite.verify_with_label_many

    def verify_with_label(public_key: bytes, label: bytes, content: bytes, signature: bytes) -> None:
        counts[label] += 1
        one(SUITE, public_key, label, content, signature)

    def verify_with_label_many(label: bytes, checks: Sequence[tuple[bytes, bytes, bytes]], verify_batch):  # type: ignore[no-untyped-def]
        counts[label] += len(checks)
        return many(SUITE, label, checks, verify_batch)

    monkeypatch.setattr(SUITE, "verify_with_label", verify_with_label)
    monkeypatch.setattr(SUITE, "verify_with_label_many", verify_with_label_many)
    yield counts


# --- each signature once ---------------------------------------------------------------------


def test_committing_cached_adds_verifies_no_key_package_again(verifications: Counter[bytes]) -> None:
    creator = _create(Client.new("creator"))
    clients = [Client.new(f"c{k}") for k in range(12)]
    bundles = [client.key_package() for client in clients]
    verifications.clear()
    for bundle in bundles:
        engine.propose(creator, Proposal(Add(bundle.key_package)), CONFIG)
    assert verifications[KP_LABEL] == 12 and verifications[LEAF_LABEL] == 12  # once each, entering the cache
    assert all(cached.verified for cached in creator.proposals.values())

    verifications.clear()
    pending = create_commit(creator, CONFIG)
    assert verifications[KP_LABEL] == 0 and verifications[LEAF_LABEL] == 0
    assert _listed(pending.message) == list(creator.proposals)  # every cached proposal, by reference, in order

    assert pending.welcome is not None
    joined = join_from_welcome(_welcome(pending.welcome), _finder(clients[5].join_keys(bundles[5])), CONFIG).state
    assert joined.tree.member_count == 13
    assert joined.secrets.epoch_authenticator == pending.next_state.secrets.epoch_authenticator


def test_a_received_commit_of_cached_proposals_verifies_none_again(verifications: Counter[bytes]) -> None:
    creator, (b, c) = _group(3)
    bundles = [Client.new(f"n{k}").key_package() for k in range(6)]
    update = engine.propose(c, engine.update_proposal(c, CONFIG), CONFIG)
    creator, b = _deliver(update, [creator, b])
    verifications.clear()
    for bundle in bundles:
        message = engine.propose(b, Proposal(Add(bundle.key_package)), CONFIG)
        creator, c = _deliver(message, [creator, c])
    assert verifications[KP_LABEL] == 3 * 6  # once by the proposer and once by each receiver
    pending = create_commit(creator, CONFIG)
    assert len(_listed(pending.message)) == 7
    creator = engine.apply_pending_commit(creator, CONFIG)

    verifications.clear()
    b = engine.receive(b, pending.message, CONFIG).state
    c = engine.receive(c, pending.message, CONFIG).state
    assert verifications[KP_LABEL] == 0
    assert verifications[LEAF_LABEL] == 2  # the committer's UpdatePath leaf, once per receiver; no cached leaf
    assert b.epoch == c.epoch == creator.epoch and b.tree.member_count == 9
    assert b.secrets.epoch_authenticator == c.secrets.epoch_authenticator == creator.secrets.epoch_authenticator


def test_by_value_adds_are_verified_once_by_committer_and_by_receiver(verifications: Counter[bytes]) -> None:
    creator, (b,) = _group(2)
    bundles = [Client.new(f"v{k}").key_package() for k in range(5)]
    verifications.clear()
    pending = create_commit(creator, CONFIG, by_value=[Proposal(Add(x.key_package)) for x in bundles])
    assert verifications[KP_LABEL] == 5 and verifications[LEAF_LABEL] == 5
    verifications.clear()
    b = engine.receive(b, pending.message, CONFIG).state
    assert verifications[KP_LABEL] == 5 and verifications[LEAF_LABEL] == 5 + 1  # + the UpdatePath leaf
    assert b.secrets.epoch_authenticator == pending.next_state.secrets.epoch_authenticator


def test_a_forged_by_value_key_package_is_refused_with_a_typed_error() -> None:
    creator, (b,) = _group(2)
    good = Client.new("good").key_package().key_package
    forged = Client.new("forged").key_package().key_package
    forged = replace(forged, signature=bytes([forged.signature[0] ^ 1]) + forged.signature[1:])
    with pytest.raises(SignatureError):
        create_commit(creator, CONFIG, by_value=[Proposal(Add(good)), Proposal(Add(forged))])
    assert creator.pending is None


# --- the selection still leaves conflicting proposals out (§12.2, §12.4) ----------------------


def test_second_add_of_one_signature_key_is_left_out() -> None:
    creator, (b,) = _group(2)
    client = Client.new("twice")
    first, second = client.key_package(), client.key_package()
    refs = []
    for bundle in (first, second):
        message = engine.propose(b, Proposal(Add(bundle.key_package)), CONFIG)
        creator = engine.receive(creator, message, CONFIG).state
        refs.append(list(creator.proposals)[-1])
    pending = create_commit(creator, CONFIG)
    assert _listed(pending.message) == [refs[0]]
    b = engine.receive(b, pending.message, CONFIG).state
    assert b.tree.member_count == 3 and b.tree.signature_key_count(client.signature_key) == 1


def test_update_and_remove_of_one_leaf_the_later_is_left_out() -> None:
    creator, (b, c, d) = _group(4)
    update = engine.propose(c, engine.update_proposal(c, CONFIG), CONFIG)
    creator, b, d = _deliver(update, [creator, b, d])
    remove = engine.propose(b, Proposal(Remove(c.leaf_index)), CONFIG)
    creator, c, d = _deliver(remove, [creator, c, d])
    remove_d = engine.propose(b, Proposal(Remove(d.leaf_index)), CONFIG, authenticated_data=b"d")
    creator, c, d = _deliver(remove_d, [creator, c, d])
    update_ref, remove_ref, remove_d_ref = list(creator.proposals)
    pending = create_commit(creator, CONFIG)
    assert _listed(pending.message) == [update_ref, remove_d_ref]
    c = engine.receive(c, pending.message, CONFIG).state
    assert c.tree.leaf(c.leaf_index) is not None and c.tree.member_count == 3
    assert c.secrets.epoch_authenticator == pending.next_state.secrets.epoch_authenticator


def test_committer_update_and_removal_are_left_out() -> None:
    creator, (b,) = _group(2)
    own_update = engine.propose(creator, engine.update_proposal(creator, CONFIG), CONFIG)
    b = engine.receive(b, own_update, CONFIG).state
    remove_committer = engine.propose(b, Proposal(Remove(creator.leaf_index)), CONFIG)
    creator = engine.receive(creator, remove_committer, CONFIG).state
    pending = create_commit(creator, CONFIG)
    assert _listed(pending.message) == []
    assert engine.receive(b, pending.message, CONFIG).state.epoch == creator.epoch + 1


def test_only_one_group_context_extensions_and_reinit_alone() -> None:
    creator, (b,) = _group(2)
    for data in (b"1", b"2"):
        message = engine.propose(b, Proposal(GroupContextExtensions(())), CONFIG, authenticated_data=data)
        creator = engine.receive(creator, message, CONFIG).state
    first, _ = list(creator.proposals)
    assert _listed(create_commit(creator, CONFIG).message) == [first]

    creator, (b,) = _group(2)
    reinit = Proposal(ReInit(b"new group", 1, SUITE.suite_id, ()))
    bundle = Client.new("late").key_package()
    for proposal in (reinit, Proposal(Add(bundle.key_package))):
        creator = engine.receive(creator, engine.propose(b, proposal, CONFIG), CONFIG).state
    reinit_ref, _ = list(creator.proposals)
    assert _listed(create_commit(creator, CONFIG).message) == [reinit_ref]

    creator, (b,) = _group(2)
    for proposal in (Proposal(Add(Client.new("early").key_package().key_package)), reinit):
        creator = engine.receive(creator, engine.propose(b, proposal, CONFIG), CONFIG).state
    add_ref, _ = list(creator.proposals)
    pending = create_commit(creator, CONFIG)
    assert _listed(pending.message) == [add_ref]
    assert engine.receive(b, pending.message, CONFIG).state.tree.member_count == 3


def test_a_by_value_proposal_and_a_cached_one_on_one_leaf_keep_the_by_value_one() -> None:
    creator, (b, c) = _group(3)
    update = engine.propose(c, engine.update_proposal(c, CONFIG), CONFIG)
    creator = engine.receive(creator, update, CONFIG).state
    pending = create_commit(creator, CONFIG, by_value=[Proposal(Remove(c.leaf_index))])
    assert _listed(pending.message) == [Proposal(Remove(c.leaf_index))]
    assert engine.receive(b, pending.message, CONFIG).state.tree.member_count == 2


def _reference_selection(state: GroupState) -> list[bytes]:
    """§12.4 read literally: each cached proposal, in order, is kept if the whole list so far
    (with it) still applies; the quadratic algorithm the incremental selection replaces."""
    me = Sender.member(state.leaf_index)
    chosen: list[ProposalEntry] = []
    for cached in state.proposals.values():
        candidate = [*chosen, ProposalEntry(cached.proposal, cached.sender, cached.ref)]
        try:
            apply_proposals(state, candidate, me, now=CONFIG.now())
        except MLSError:
            continue
        chosen = candidate
    return [entry.ref for entry in chosen if entry.ref is not None]


@pytest.mark.parametrize("seed", range(20))
def test_incremental_selection_agrees_with_applying_the_whole_list_per_candidate(seed: int) -> None:
    rng = random.Random(seed)
    creator, members = _group(5)
    states = [creator, *members]
    twice = Client.new("twice")
    for step in range(10):
        proposer = rng.randrange(len(states))
        kind = rng.choice(["add", "add", "add twice", "update", "remove", "remove", "extensions", "reinit"])
        state = states[proposer]
        if kind == "add":
            proposal = Proposal(Add(Client.new(f"new {step}").key_package().key_package))
        elif kind == "add twice":
            proposal = Proposal(Add(twice.key_package().key_package))
        elif kind == "update":
            proposal = engine.update_proposal(state, CONFIG)
        elif kind == "remove":
            proposal = Proposal(Remove(rng.randrange(len(states))))
        elif kind == "extensions":
            proposal = Proposal(GroupContextExtensions(()))
        else:
            proposal = Proposal(ReInit(b"successor", 1, SUITE.suite_id, ()))
        message = engine.propose(state, proposal, CONFIG, authenticated_data=b"%d" % step)
        states = [s if i == proposer else engine.receive(s, message, CONFIG).state for i, s in enumerate(states)]
    expected = _reference_selection(states[0])
    pending = create_commit(states[0], CONFIG)
    assert _listed(pending.message) == expected
    for state in states[1:]:
        result = engine.receive(state, pending.message, CONFIG)
        if result.state.removed:
            continue
        assert result.state.secrets.epoch_authenticator == pending.next_state.secrets.epoch_authenticator


# --- the batch verifier ------------------------------------------------------------------------


class PooledVerifier:
    """A batch verifier on a thread pool the test owns; remembers the batch sizes it saw."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool
        self.batches: list[int] = []

    def __call__(self, verify: Callable[[SignatureCheck], bool], checks: Sequence[SignatureCheck]) -> list[bool]:
        self.batches.append(len(checks))
        return list(self.pool.map(verify, checks, chunksize=16))


def test_pooled_verifier_joins_to_the_same_state_as_the_serial_one() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        pooled = PooledVerifier(pool)
        config = replace(CONFIG, verify_batch=pooled)
        creator, _ = _group(40, joiners=0)
        client = Client.new("joiner")
        bundle = client.key_package()
        pending = create_commit(creator, config, by_value=[Proposal(Add(bundle.key_package))], force_path=False)
        assert pooled.batches == [1, 1]  # the KeyPackage and its leaf, one batch each
        assert pending.welcome is not None
        serial = join_from_welcome(_welcome(pending.welcome), _finder(client.join_keys(bundle)), CONFIG).state
        pooled.batches.clear()
        joined = join_from_welcome(_welcome(pending.welcome), _finder(client.join_keys(bundle)), config).state
    assert pooled.batches == [41]  # every leaf of the tree in one batch
    assert joined.tree == serial.tree and joined.leaf_index == serial.leaf_index
    assert joined.secrets.epoch_authenticator == serial.secrets.epoch_authenticator


def test_forged_leaf_in_a_1000_leaf_tree_is_refused_through_the_batch_path() -> None:
    creator, _ = _group(1000, joiners=0)
    forged_leaf = creator.tree.leaf(517)
    assert forged_leaf is not None
    signature = forged_leaf.signature
    creator.tree.set_leaf(517, replace(forged_leaf, signature=bytes([signature[0] ^ 0x40]) + signature[1:]))
    client = Client.new("joiner")
    bundle = client.key_package()
    pending = create_commit(creator, CONFIG, by_value=[Proposal(Add(bundle.key_package))], force_path=False)
    assert pending.welcome is not None
    with ThreadPoolExecutor(max_workers=2) as pool:
        pooled = PooledVerifier(pool)
        with pytest.raises(SignatureError):
            join_from_welcome(
                _welcome(pending.welcome), _finder(client.join_keys(bundle)), replace(CONFIG, verify_batch=pooled)
            )
    assert pooled.batches == [1001]  # 1000 members and the joiner


def test_a_batch_verifier_must_answer_every_check() -> None:
    creator, _ = _group(4, joiners=0)
    client = Client.new("joiner")
    bundle = client.key_package()
    pending = create_commit(creator, CONFIG, by_value=[Proposal(Add(bundle.key_package))], force_path=False)
    assert pending.welcome is not None
    short = replace(CONFIG, verify_batch=lambda verify, checks: [verify(c) for c in checks[1:]])
    with pytest.raises(CryptoError):
        join_from_welcome(_welcome(pending.welcome), _finder(client.join_keys(bundle)), short)


def test_a_false_refusal_by_the_batch_verifier_is_checked_again_serially() -> None:
    creator, _ = _group(4, joiners=0)
    client = Client.new("joiner")
    bundle = client.key_package()
    pending = create_commit(creator, CONFIG, by_value=[Proposal(Add(bundle.key_package))], force_path=False)
    assert pending.welcome is not None
    pessimist = replace(CONFIG, verify_batch=lambda verify, checks: [False] * len(checks))
    joined = join_from_welcome(_welcome(pending.welcome), _finder(client.join_keys(bundle)), pessimist).state
    assert joined.secrets.epoch_authenticator == pending.next_state.secrets.epoch_authenticator

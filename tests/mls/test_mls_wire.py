"""Unit tests of the RFC 9420 wire codec (§2.1) and struct rules of ``mls.wire``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mls.errors import DecodeError, EncodeError
from mls.wire import (
    MAX_VARINT,
    Add,
    ApplicationId,
    AuthenticatedContent,
    Capabilities,
    Commit,
    ContentType,
    Credential,
    CredentialType,
    Extension,
    ExtensionType,
    ExternalPub,
    ExternalSender,
    ExternalSenders,
    FramedContent,
    FramedContentAuthData,
    FramedContentTBS,
    GroupContext,
    GroupInfo,
    GroupInfoTBS,
    GroupSecrets,
    KDFLabel,
    KeyPackage,
    KeyPackageTBS,
    LeafNode,
    LeafNodeSource,
    LeafNodeTBS,
    Lifetime,
    MLSMessage,
    Node,
    NodeType,
    ParentNode,
    PathSecret,
    PreSharedKeyID,
    PrivateMessage,
    PrivateMessageContent,
    Proposal,
    ProposalOrRef,
    ProposalOrRefType,
    ProposalType,
    ProtocolVersion,
    PSKType,
    PublicMessage,
    RatchetTreeExtension,
    Reader,
    Remove,
    RequiredCapabilities,
    ResumptionPSKUsage,
    Sender,
    SenderData,
    SenderType,
    SignContent,
    UnknownProposal,
    UpdatePath,
    UpdatePathNode,
    HPKECiphertext,
    WireFormat,
    Writer,
    decode_varint,
    encode_varint,
)

# -- §2.1.2 variable-length integers ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (37, "25"),
        (63, "3f"),
        (64, "4040"),
        (15293, "7bbd"),
        (16383, "7fff"),
        (16384, "80004000"),
        (494878333, "9d7f3e7d"),
        (MAX_VARINT, "bfffffff"),
    ],
)
def test_varint_minimal_encoding(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded)) == value


@pytest.mark.parametrize("encoded", ["4000", "403f", "80000000", "80003fff", "8000003f"])
def test_varint_rejects_non_minimal(encoded: str) -> None:
    with pytest.raises(DecodeError, match="minimally"):
        decode_varint(bytes.fromhex(encoded))


@pytest.mark.parametrize("encoded", ["c0", "c000000000000000", "ff"])
def test_varint_rejects_prefix_11(encoded: str) -> None:
    with pytest.raises(DecodeError, match="prefix"):
        decode_varint(bytes.fromhex(encoded))


@pytest.mark.parametrize("encoded", ["", "40", "8000", "80ffff"])
def test_varint_truncated(encoded: str) -> None:
    with pytest.raises(DecodeError, match="truncated"):
        decode_varint(bytes.fromhex(encoded))


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1, 1 << 40])
def test_varint_out_of_range_is_encode_error(value: int) -> None:
    with pytest.raises(EncodeError):
        encode_varint(value)


def test_opaque_length_boundaries_round_trip() -> None:
    for size in (0, 63, 64, 16383, 16384):
        writer = Writer()
        writer.opaque(b"\xab" * size)
        data = writer.getvalue()
        header = 1 if size < 64 else 2 if size < 16384 else 4
        assert len(data) == header + size
        reader = Reader(data)
        assert reader.opaque("v") == b"\xab" * size
        reader.finish("v")


def test_huge_claimed_length_fails_before_allocating() -> None:
    # A header announcing 2^30-1 bytes followed by 3 bytes: rejected as truncated.
    data = bytes.fromhex("bfffffff") + b"abc"
    with pytest.raises(DecodeError, match=r"v: truncated \(need 1073741823 bytes, 3 left\)"):
        Reader(data).opaque("v")


def test_vector_items_must_fill_the_vector_exactly() -> None:
    # uint16 vector with odd byte length
    with pytest.raises(DecodeError, match="multiple of 2"):
        Capabilities.decode(bytes.fromhex("03000100") + b"\x00" * 4)
    # Extension vector whose last item runs past the vector's end
    extensions = bytes.fromhex("05" + "0001" + "03" + "aa")
    with pytest.raises(DecodeError, match="Extension.extension_data: truncated"):
        Reader(extensions + b"bbbb").vector(Extension.read, "extensions")


def test_integer_range_checks_on_encode() -> None:
    writer = Writer()
    for method, bad in ((writer.u8, 256), (writer.u16, 1 << 16), (writer.u32, 1 << 32), (writer.u64, 1 << 64)):
        with pytest.raises(EncodeError):
            method(bad)
        with pytest.raises(EncodeError):
            method(-1)
    assert writer.getvalue() == b""
    with pytest.raises(EncodeError):
        SenderData(0, 0, b"abc").encode()


def test_fixed_integers_big_endian() -> None:
    reader = Reader(bytes.fromhex("01" "0203" "04050607" "08090a0b0c0d0e0f"))
    assert (reader.u8("a"), reader.u16("b"), reader.u32("c"), reader.u64("d")) == (
        1,
        0x0203,
        0x04050607,
        0x08090A0B0C0D0E0F,
    )
    assert reader.at_end()
    with pytest.raises(DecodeError, match="d: truncated"):
        Reader(b"\x00" * 7).u64("d")


# -- §2.1.1 optional ---------------------------------------------------------------


def test_optional_presence_octet() -> None:
    secrets = GroupSecrets(b"j", PathSecret(b"p"), ())
    encoded = secrets.encode()
    assert encoded == bytes.fromhex("016a" "01" "0170" "00")
    assert GroupSecrets.decode(encoded) == secrets
    assert GroupSecrets.decode(bytes.fromhex("016a0000")) == GroupSecrets(b"j")
    with pytest.raises(DecodeError, match="presence octet 2"):
        GroupSecrets.decode(bytes.fromhex("016a0200"))


# -- whole-struct decoding -----------------------------------------------------------


def test_trailing_bytes_rejected() -> None:
    encoded = Remove(7).encode()
    assert Remove.decode(encoded) == Remove(7)
    with pytest.raises(DecodeError, match="Remove: 1 trailing bytes"):
        Remove.decode(encoded + b"\x00")


def test_truncation_names_the_field() -> None:
    with pytest.raises(DecodeError, match=r"Remove\.removed: truncated"):
        Remove.decode(b"\x00\x00")


def test_decode_accepts_bytearray_and_memoryview() -> None:
    encoded = Remove(9).encode()
    assert Remove.decode(bytearray(encoded)) == Remove(9)
    assert Remove.decode(memoryview(encoded)) == Remove(9)


def _leaf(source: LeafNodeSource = LeafNodeSource.KEY_PACKAGE) -> LeafNode:
    return LeafNode(
        encryption_key=b"E" * 32,
        signature_key=b"S" * 32,
        credential=Credential.basic(b"alice"),
        capabilities=Capabilities((1,), (1, 2), (0x0A0A,), (), (1,)),
        leaf_node_source=source,
        lifetime=Lifetime(1, 2) if source == LeafNodeSource.KEY_PACKAGE else None,
        parent_hash=b"P" * 32 if source == LeafNodeSource.COMMIT else None,
        extensions=(Extension(0x0A0A, b"grease"),),
        signature=b"sig",
    )


def _key_package() -> KeyPackage:
    return KeyPackage(ProtocolVersion.MLS10, 1, b"I" * 32, _leaf(), (), b"kpsig")


def test_leaf_node_round_trip_each_source() -> None:
    for source in (LeafNodeSource.KEY_PACKAGE, LeafNodeSource.UPDATE, LeafNodeSource.COMMIT):
        leaf = _leaf(source)
        assert LeafNode.decode(leaf.encode()) == leaf


def test_leaf_node_source_fields_checked_on_encode() -> None:
    with pytest.raises(EncodeError):
        replace(_leaf(), lifetime=None).encode()
    with pytest.raises(EncodeError):
        replace(_leaf(LeafNodeSource.UPDATE), parent_hash=b"").encode()
    with pytest.raises(EncodeError):
        replace(_leaf(LeafNodeSource.COMMIT), parent_hash=None).encode()


def test_leaf_node_invalid_source_rejected() -> None:
    encoded = bytearray(_leaf(LeafNodeSource.UPDATE).encode())
    # The source octet sits right before the extensions vector: find it by re-encoding the prefix.
    writer = Writer()
    leaf = _leaf(LeafNodeSource.UPDATE)
    writer.opaque(leaf.encryption_key)
    writer.opaque(leaf.signature_key)
    leaf.credential.write(writer)
    leaf.capabilities.write(writer)
    position = len(writer.buf)
    assert encoded[position] == LeafNodeSource.UPDATE
    for bad in (0, 4, 255):
        encoded[position] = bad
        with pytest.raises(DecodeError, match="leaf_node_source"):
            LeafNode.decode(bytes(encoded))


def test_leaf_node_tbs_context_by_source() -> None:
    kp_leaf = _leaf()
    tbs = LeafNodeTBS(kp_leaf).encode()
    assert kp_leaf.encode() == tbs + b"\x03sig"
    assert LeafNodeTBS.decode(tbs) == LeafNodeTBS(replace(kp_leaf, signature=b""))
    with pytest.raises(EncodeError):
        LeafNodeTBS(kp_leaf, b"group", 3).encode()
    commit_leaf = _leaf(LeafNodeSource.COMMIT)
    tbs = LeafNodeTBS(commit_leaf, b"group", 3).encode()
    assert tbs.endswith(b"\x05group" + (3).to_bytes(4, "big"))
    assert LeafNodeTBS.decode(tbs) == LeafNodeTBS(replace(commit_leaf, signature=b""), b"group", 3)
    with pytest.raises(EncodeError):
        LeafNodeTBS(commit_leaf).encode()


def test_key_package_and_tbs() -> None:
    key_package = _key_package()
    encoded = key_package.encode()
    assert KeyPackage.decode(encoded) == key_package
    tbs = KeyPackageTBS(key_package).encode()
    assert encoded == tbs + b"\x05kpsig"
    assert KeyPackageTBS.decode(tbs).key_package == replace(key_package, signature=b"")


def test_unknown_codepoints_preserved() -> None:
    key_package = replace(_key_package(), version=0x0B0B, cipher_suite=0xCACA)
    decoded = KeyPackage.decode(key_package.encode())
    assert (decoded.version, decoded.cipher_suite) == (0x0B0B, 0xCACA)
    credential = Credential(0x1A1A, data=b"custom")
    encoded = credential.encode()
    assert encoded == bytes.fromhex("1a1a06") + b"custom"
    assert Credential.decode(encoded) == credential
    x509 = Credential.x509((b"leaf", b"ca"))
    assert Credential.decode(x509.encode()) == x509
    assert x509.encode() == bytes.fromhex("0002" "08" "04") + b"leaf" + b"\x02ca"


def test_unknown_proposal_kept_raw() -> None:
    proposal = Proposal(UnknownProposal(0x2A2A, b"body"))
    encoded = proposal.encode()
    assert encoded == bytes.fromhex("2a2a04") + b"body"
    decoded = Proposal.decode(encoded)
    assert decoded == proposal
    assert decoded.proposal_type == 0x2A2A
    with pytest.raises(EncodeError):
        Proposal(UnknownProposal(ProposalType.REMOVE, b"\x00\x00\x00\x01")).encode()


def test_proposal_dispatch_and_refs() -> None:
    assert Proposal.decode(bytes.fromhex("0003" "00000005")) == Proposal(Remove(5))
    commit = Commit((ProposalOrRef(Proposal(Remove(1))), ProposalOrRef(b"ref")), None)
    decoded = Commit.decode(commit.encode())
    assert decoded == commit
    assert [p.type for p in decoded.proposals] == [ProposalOrRefType.PROPOSAL, ProposalOrRefType.REFERENCE]
    with pytest.raises(DecodeError, match="ProposalOrRef.type"):
        Commit.decode(bytes.fromhex("02" "03ff" "00"))


def test_commit_with_path() -> None:
    path = UpdatePath(_leaf(LeafNodeSource.COMMIT), (UpdatePathNode(b"k", (HPKECiphertext(b"o", b"c"),)),))
    commit = Commit((ProposalOrRef(Proposal(Add(_key_package()))),), path)
    assert Commit.decode(commit.encode()) == commit


def test_psk_ids() -> None:
    external = PreSharedKeyID.external(b"id", b"nonce")
    resumption = PreSharedKeyID.resumption(ResumptionPSKUsage.BRANCH, b"g", 9, b"n")
    for psk in (external, resumption):
        assert PreSharedKeyID.decode(psk.encode()) == psk
    assert resumption.encode() == bytes.fromhex("02" "03" "0167" "0000000000000009" "016e")
    with pytest.raises(DecodeError, match="psktype"):
        PreSharedKeyID.decode(bytes.fromhex("03016e"))
    assert PreSharedKeyID(PSKType.EXTERNAL, b"n", psk_id=b"i").encode() == bytes.fromhex("01" "0169" "016e")


def test_extensions_typed_views() -> None:
    senders = ExternalSenders((ExternalSender(b"key", Credential.basic(b"ds")),))
    for content in (
        ApplicationId(b"app"),
        RequiredCapabilities((5,), (0x2A2A,), (2,)),
        ExternalPub(b"pub"),
        senders,
        RatchetTreeExtension((_leaf(), None, _leaf(LeafNodeSource.UPDATE))),
    ):
        extension = content.to_extension()
        assert extension.extension_type == type(content).EXTENSION_TYPE
        assert Extension.decode(extension.encode()) == extension
        assert type(content).from_extension(extension) == content
    with pytest.raises(DecodeError, match="extension type"):
        ExternalPub.from_extension(ApplicationId(b"x").to_extension())
    # unknown extensions keep their bytes, even when they are not valid TLS
    unknown = Extension(0xFF00, b"\xff\xff")
    assert Extension.decode(unknown.encode()) == unknown


def test_ratchet_tree_nodes() -> None:
    parent = ParentNode(b"K", b"H", (1, 2))
    tree = RatchetTreeExtension((_leaf(), parent, None))
    encoded = tree.encode()
    assert RatchetTreeExtension.decode(encoded) == tree
    assert Node.decode(Node(parent).encode()).body == parent
    assert Node(parent).node_type == NodeType.PARENT
    with pytest.raises(DecodeError, match="Node.node_type"):
        Node.decode(b"\x03")
    with pytest.raises(DecodeError, match="unmerged_leaves"):
        ParentNode.decode(bytes.fromhex("014b" "0148" "03000000"))


def _content(body: bytes | Proposal | Commit, sender: Sender | None = None) -> FramedContent:
    return FramedContent(b"group", 3, sender or Sender.member(1), b"aad", body)


def test_sender_variants() -> None:
    for sender in (Sender.member(4), Sender.external(2), Sender.new_member_proposal(), Sender.new_member_commit()):
        assert Sender.decode(sender.encode()) == sender
    assert Sender.member(4).encode() == bytes.fromhex("0100000004")
    assert Sender.new_member_commit().encode() == b"\x04"
    for bad in ("00", "05"):
        with pytest.raises(DecodeError, match="sender_type"):
            Sender.decode(bytes.fromhex(bad))
    with pytest.raises(EncodeError):
        Sender(SenderType.MEMBER).encode()


def test_public_message_rules() -> None:
    commit_content = _content(Commit())
    auth = FramedContentAuthData(b"sig", b"tag")
    message = PublicMessage(commit_content, auth, b"mtag")
    assert commit_content.content_type == ContentType.COMMIT
    assert PublicMessage.decode(message.encode()) == message
    with pytest.raises(EncodeError):  # commits need a confirmation tag
        PublicMessage(commit_content, FramedContentAuthData(b"sig"), b"mtag").encode()
    with pytest.raises(EncodeError):  # members need a membership tag
        PublicMessage(commit_content, auth).encode()
    external = PublicMessage(_content(Proposal(Remove(0)), Sender.external(0)), FramedContentAuthData(b"s"))
    assert PublicMessage.decode(external.encode()) == external
    with pytest.raises(DecodeError, match="content_type"):
        FramedContent.decode(_content(b"x").encode()[:-3] + b"\x00\x01x")


def test_framed_content_tbs_context() -> None:
    context = GroupContext(1, b"group", 3, b"th", b"cth")
    tbs = FramedContentTBS(WireFormat.MLS_PUBLIC_MESSAGE, _content(b"hi"), context)
    encoded = tbs.encode()
    assert encoded[:4] == bytes.fromhex("00010001")
    assert FramedContentTBS.decode(encoded) == tbs
    with pytest.raises(EncodeError):
        FramedContentTBS(WireFormat.MLS_PUBLIC_MESSAGE, _content(b"hi")).encode()
    external = FramedContentTBS(WireFormat.MLS_PUBLIC_MESSAGE, _content(Proposal(Remove(0)), Sender.external(0)))
    assert FramedContentTBS.decode(external.encode()) == external


def test_authenticated_content_round_trip() -> None:
    value = AuthenticatedContent(WireFormat.MLS_PRIVATE_MESSAGE, _content(b"app"), FramedContentAuthData(b"s"))
    assert AuthenticatedContent.decode(value.encode()) == value
    with pytest.raises(DecodeError, match="wire_format"):
        AuthenticatedContent.decode(b"\x00\x07" + value.encode()[2:])


def test_private_message_content_padding() -> None:
    content = PrivateMessageContent(b"hello", FramedContentAuthData(b"sig"), padding_length=5)
    encoded = content.encode()
    assert encoded == b"\x05hello\x03sig" + bytes(5)
    assert PrivateMessageContent.decode_with(encoded, ContentType.APPLICATION) == content
    with pytest.raises(DecodeError, match="non-zero padding"):
        PrivateMessageContent.decode_with(encoded[:-1] + b"\x01", ContentType.APPLICATION)
    commit = PrivateMessageContent(Commit(), FramedContentAuthData(b"s", b"t"))
    assert PrivateMessageContent.decode_with(commit.encode(), ContentType.COMMIT) == commit
    with pytest.raises(DecodeError):
        PrivateMessageContent.decode(encoded)
    with pytest.raises(DecodeError, match="content_type"):
        PrivateMessageContent.decode_with(encoded, ContentType.RESERVED)


def test_mls_message_envelope() -> None:
    private = PrivateMessage(b"g", 1, ContentType.APPLICATION, b"", b"esd", b"ct")
    message = MLSMessage(private)
    encoded = message.encode()
    assert encoded[:4] == bytes.fromhex("00010002")
    assert MLSMessage.decode(encoded) == message
    assert message.wire_format == WireFormat.MLS_PRIVATE_MESSAGE
    for header in ("00020002", "00000002", "00010000", "00010006"):
        with pytest.raises(DecodeError, match="MLSMessage"):
            MLSMessage.decode(bytes.fromhex(header) + encoded[4:])
    group_info = GroupInfo(GroupContext(1, b"g", 0, b"t", b"c"), (), b"tag", 0, b"sig")
    assert MLSMessage.decode(MLSMessage(group_info).encode()).body == group_info
    assert GroupInfo.decode(group_info.encode()) == group_info
    assert GroupInfoTBS.decode(GroupInfoTBS(group_info).encode()).group_info == replace(group_info, signature=b"")


def test_labelled_structs() -> None:
    assert SignContent.make("LeafNodeTBS", b"x").encode() == b"\x13MLS 1.0 LeafNodeTBS\x01x"
    assert KDFLabel.make("key", b"", 16).encode() == b"\x00\x10\x0bMLS 1.0 key\x00"


def test_secrets_not_in_repr() -> None:
    secrets = GroupSecrets(b"\x11" * 32, PathSecret(b"\x22" * 32))
    text = repr(secrets)
    assert "\\x11" not in text and "\\x22" not in text and "11111111" not in text


def test_enums_are_int_enums() -> None:
    assert ExtensionType.EXTERNAL_SENDERS == 5
    assert CredentialType.X509 == 2
    assert ProposalType.GROUP_CONTEXT_EXTENSIONS == 7
    assert Extension.decode(bytes.fromhex("000300")).extension_type is ExtensionType.REQUIRED_CAPABILITIES

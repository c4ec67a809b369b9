"""MLS cipher suites 1-7 (RFC 9420 §5, §17.1) and array tree math (Appendix C).

Official vectors (crypto-basics.json, tree-math.json, and treekem.json for DeriveKeyPair)
run case by case; cryptography's own HPKE serves as an independent implementation for the
suites it covers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from mls import tree_math
from mls.crypto import KEY_PACKAGE_REF_LABEL, SUPPORTED_CIPHER_SUITES, CipherSuite, cipher_suite
from mls.crypto.kem import EcKem
from mls.errors import CryptoError, SignatureError, TreeMathError, UnsupportedCipherSuiteError
from mls.vectors import crypto_basics, run_file
from mls.vectors import tree_math as tree_math_vectors
from mls.vectors.__main__ import main as vectors_main

ALL_SUITES = list(range(1, 8))
# Case counts of the official files: a vector file that shrinks must fail, not pass quietly.
CRYPTO_BASICS_CASES = 7
TREE_MATH_CASES = 10


def _load(vectors_dir: Path, name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((vectors_dir / "mls" / name).read_text())
    return cases


# --- official vectors -----------------------------------------------------------------------


def test_vector_files_have_expected_case_counts(vectors_dir: Path) -> None:
    assert len(_load(vectors_dir, "crypto-basics.json")) == CRYPTO_BASICS_CASES
    assert len(_load(vectors_dir, "tree-math.json")) == TREE_MATH_CASES
    suites = sorted(case["cipher_suite"] for case in _load(vectors_dir, "crypto-basics.json"))
    assert suites == ALL_SUITES


@pytest.mark.parametrize("index", range(CRYPTO_BASICS_CASES))
def test_crypto_basics_vector(vectors_dir: Path, index: int) -> None:
    crypto_basics.check(_load(vectors_dir, "crypto-basics.json")[index])


@pytest.mark.parametrize("index", range(TREE_MATH_CASES))
def test_tree_math_vector(vectors_dir: Path, index: int) -> None:
    tree_math_vectors.check(_load(vectors_dir, "tree-math.json")[index])


def test_vector_runner_counts_and_exits_zero(vectors_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [vectors_dir / "mls" / "crypto-basics.json", vectors_dir / "mls" / "tree-math.json"]
    assert vectors_main([str(path) for path in files]) == 0
    out = capsys.readouterr().out
    assert "crypto-basics.json: 7 passed, 0 failed" in out
    assert "tree-math.json: 10 passed, 0 failed" in out
    result = run_file(files[0])
    assert (result.passed, result.failed) == (CRYPTO_BASICS_CASES, 0)


def test_crypto_basics_checker_rejects_altered_vector(vectors_dir: Path) -> None:
    case = _load(vectors_dir, "crypto-basics.json")[0]
    case["derive_secret"]["out"] = "00" + case["derive_secret"]["out"][2:]
    with pytest.raises(AssertionError):
        crypto_basics.check(case)


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_vector_ciphertext_tampering_is_detected(vectors_dir: Path, suite_id: int) -> None:
    case = next(c for c in _load(vectors_dir, "crypto-basics.json") if c["cipher_suite"] == suite_id)
    suite = cipher_suite(suite_id)
    ewl = case["encrypt_with_label"]
    args = (bytes.fromhex(ewl["priv"]), ewl["label"].encode(), bytes.fromhex(ewl["context"]))
    kem_output, ciphertext = bytes.fromhex(ewl["kem_output"]), bytes.fromhex(ewl["ciphertext"])
    with pytest.raises(CryptoError):
        suite.decrypt_with_label(*args, kem_output, _flip(ciphertext, len(ciphertext) - 1))
    with pytest.raises(CryptoError):
        suite.decrypt_with_label(*args, _flip(kem_output, 5), ciphertext)
    with pytest.raises(CryptoError):
        suite.decrypt_with_label(args[0], b"OtherLabel", args[2], kem_output, ciphertext)
    swl = case["sign_with_label"]
    with pytest.raises(SignatureError):
        suite.verify_with_label(
            bytes.fromhex(swl["pub"]), swl["label"].encode(),
            _flip(bytes.fromhex(swl["content"]), 0), bytes.fromhex(swl["signature"]),
        )


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_derive_key_pair_matches_treekem_vector_keys(vectors_dir: Path, suite_id: int) -> None:
    """RFC 9180 §7.1.3: node keys derived from path secrets (RFC 9420 §7.4) are in the tree."""
    suite = cipher_suite(suite_id)
    checked = 0
    for case in _load(vectors_dir, "treekem.json"):
        if case["cipher_suite"] != suite_id:
            continue
        tree = bytes.fromhex(case["ratchet_tree"])
        for leaf in case["leaves_private"]:
            assert suite.hpke_public_key(bytes.fromhex(leaf["encryption_priv"])) in tree
            assert suite.signature_public_key(bytes.fromhex(leaf["signature_priv"])) in tree
            for entry in leaf["path_secrets"]:
                node_secret = suite.derive_secret(bytes.fromhex(entry["path_secret"]), b"node")
                private, public = suite.derive_key_pair(node_secret)
                assert public in tree
                assert suite.hpke_public_key(private) == public
                checked += 1
    assert checked > 0


# --- independent implementations -------------------------------------------------------------

_CRYPTOGRAPHY_HPKE = {
    1: (hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM),
    2: (hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM),
    3: (hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
    5: (hpke.KEM.P521, hpke.KDF.HKDF_SHA512, hpke.AEAD.AES_256_GCM),
    7: (hpke.KEM.P384, hpke.KDF.HKDF_SHA384, hpke.AEAD.AES_256_GCM),
}


@pytest.mark.parametrize("suite_id", sorted(_CRYPTOGRAPHY_HPKE))
def test_hpke_interoperates_with_cryptography_hpke(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    other = hpke.Suite(*_CRYPTOGRAPHY_HPKE[suite_id])
    kem = suite._hpke.kem
    private, public = suite.generate_key_pair()
    sealed = other.encrypt(b"from cryptography", kem.load_public(public), info=b"info")
    assert suite.hpke_open(private, sealed[: kem.Nenc], b"info", b"", sealed[kem.Nenc :]) == (
        b"from cryptography"
    )
    kem_output, ciphertext = suite.hpke_seal(public, b"info", b"", b"from mls")
    assert other.decrypt(kem_output + ciphertext, kem.load_private(private), info=b"info") == b"from mls"


@pytest.mark.parametrize(
    ("suite_id", "expected"),
    [
        (1, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (7, "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
            "8e2240ca5e69e2c78b3239ecfab21649"),
        (5, "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
            "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"),
    ],
)
def test_mac_matches_rfc4231_case_2(suite_id: int, expected: str) -> None:
    assert cipher_suite(suite_id).mac(b"Jefe", b"what do ya want for nothing?").hex() == expected


def test_kdf_matches_rfc5869_case_1() -> None:
    suite = cipher_suite(1)
    prk = suite.kdf_extract(bytes(range(13)), b"\x0b" * 22)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = suite.kdf_expand(prk, bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


# --- all suites: parameters and round trips -----------------------------------------------------


@pytest.mark.parametrize(
    ("suite_id", "nh", "nk", "hpke_pk", "sig_pk"),
    [
        (1, 32, 16, 32, 32),
        (2, 32, 16, 65, 65),
        (3, 32, 32, 32, 32),
        (4, 64, 32, 56, 57),
        (5, 64, 32, 133, 133),
        (6, 64, 32, 56, 57),
        (7, 48, 32, 97, 97),
    ],
)
def test_suite_parameters_and_key_sizes(suite_id: int, nh: int, nk: int, hpke_pk: int, sig_pk: int) -> None:
    suite = cipher_suite(suite_id)
    assert (suite.suite_id, suite.Nh, suite.Nk, suite.Nn) == (suite_id, nh, nk, 12)
    assert len(suite.hash(b"")) == nh
    assert len(suite.derive_secret(b"s" * nh, b"x")) == nh
    private, public = suite.generate_key_pair()
    assert len(public) == hpke_pk
    assert suite.hpke_public_key(private) == public
    sig_private, sig_public = suite.generate_signature_key_pair()
    assert len(sig_public) == sig_pk
    assert suite.signature_public_key(sig_private) == sig_public


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_round_trips(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    private, public = suite.generate_key_pair()
    kem_output, ciphertext = suite.encrypt_with_label(public, b"UpdatePathNode", b"ctx", b"secret")
    assert suite.decrypt_with_label(private, b"UpdatePathNode", b"ctx", kem_output, ciphertext) == b"secret"
    kem_output, ciphertext = suite.hpke_seal(public, b"info", b"aad", b"pt")
    assert suite.hpke_open(private, kem_output, b"info", b"aad", ciphertext) == b"pt"
    with pytest.raises(CryptoError):
        suite.hpke_open(private, kem_output, b"info", b"other aad", ciphertext)
    sig_private, sig_public = suite.generate_signature_key_pair()
    signature = suite.sign_with_label(sig_private, b"LeafNodeTBS", b"content")
    suite.verify_with_label(sig_public, b"LeafNodeTBS", b"content", signature)
    with pytest.raises(SignatureError):
        suite.verify_with_label(sig_public, b"GroupInfoTBS", b"content", signature)
    other_private, other_public = suite.generate_signature_key_pair()
    with pytest.raises(SignatureError):
        suite.verify_with_label(other_public, b"LeafNodeTBS", b"content", signature)


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_derive_key_pair_is_deterministic(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    first = suite.derive_key_pair(b"ikm" * 11)
    assert suite.derive_key_pair(b"ikm" * 11) == first
    assert suite.derive_key_pair(b"other ikm") != first
    assert suite.hpke_public_key(first[0]) == first[1]


def test_cipher_suite_instances_are_shared() -> None:
    assert cipher_suite(1) is cipher_suite(1)
    assert isinstance(cipher_suite(7), CipherSuite)
    assert SUPPORTED_CIPHER_SUITES == tuple(ALL_SUITES)
    assert repr(cipher_suite(2)) == "CipherSuite(2)"


@pytest.mark.parametrize("suite_id", [0, 8, 0xFFFF, -1, "1", None, True])
def test_unsupported_cipher_suite(suite_id: Any) -> None:
    with pytest.raises(UnsupportedCipherSuiteError):
        cipher_suite(suite_id)


def test_ref_hash_label_is_verbatim() -> None:
    suite = cipher_suite(1)
    with_prefix = suite.ref_hash(KEY_PACKAGE_REF_LABEL, b"kp")
    assert with_prefix == suite.hash(bytes([len(KEY_PACKAGE_REF_LABEL)]) + KEY_PACKAGE_REF_LABEL + b"\x02kp")
    assert suite.ref_hash(b"KeyPackage Reference", b"kp") != with_prefix


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_varint_lengths_above_one_byte(suite_id: int) -> None:
    """Contents of 64+ and 16384+ bytes use 2- and 4-byte length prefixes (§2.1.2)."""
    suite = cipher_suite(suite_id)
    sig_private, sig_public = suite.generate_signature_key_pair()
    for content in (b"a" * 100, b"b" * 20000):
        suite.verify_with_label(sig_public, b"L", content, suite.sign_with_label(sig_private, b"L", content))
    secret = b"\x01" * suite.Nh
    assert suite.expand_with_label(secret, b"L", b"c" * 100, 16) != suite.expand_with_label(
        secret, b"L", b"c" * 99, 16
    )


# --- AEAD --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_aead_tampering_and_bad_lengths(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    key, nonce = bytes(range(suite.Nk)), bytes(range(100, 100 + suite.Nn))
    sealed = suite.aead_seal(key, nonce, b"aad", b"frame payload")
    assert len(sealed) == len(b"frame payload") + 16
    assert suite.aead_open(key, nonce, b"aad", sealed) == b"frame payload"
    for bad in (
        lambda: suite.aead_open(key, nonce, b"aad", _flip(sealed, 0)),
        lambda: suite.aead_open(key, nonce, b"aaD", sealed),
        lambda: suite.aead_open(key, _flip(nonce, 0), b"aad", sealed),
        lambda: suite.aead_open(key, nonce, b"aad", sealed[:10]),
        lambda: suite.aead_open(key + b"\x00", nonce, b"aad", sealed),
        lambda: suite.aead_seal(key[:-1], nonce, b"aad", b"x"),
        lambda: suite.aead_seal(key, nonce[:-1], b"aad", b"x"),
    ):
        with pytest.raises(CryptoError):
            bad()


@settings(max_examples=25, deadline=None)
@given(
    suite_id=st.sampled_from(ALL_SUITES),
    plaintext=st.binary(max_size=300),
    aad=st.binary(max_size=64),
    bit=st.integers(min_value=0),
)
def test_aead_round_trip_and_any_bit_flip(suite_id: int, plaintext: bytes, aad: bytes, bit: int) -> None:
    suite = cipher_suite(suite_id)
    key, nonce = b"k" * suite.Nk, b"n" * suite.Nn
    sealed = suite.aead_seal(key, nonce, aad, plaintext)
    assert suite.aead_open(key, nonce, aad, sealed) == plaintext
    position = bit % (8 * len(sealed))
    tampered = bytearray(sealed)
    tampered[position // 8] ^= 1 << (position % 8)
    with pytest.raises(CryptoError):
        suite.aead_open(key, nonce, aad, bytes(tampered))


# --- malformed keys and signatures --------------------------------------------------------------


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


_BAD_HPKE_PUBLIC = {
    1: [b"", bytes(31), bytes(33)],
    2: [bytes(65), b"\x04" + bytes(64), b"\x02" + bytes(32), b"\x04" + b"\xff" * 64],
    3: [bytes(31)],
    4: [bytes(55), bytes(57)],
    5: [b"\x04" + bytes(132), b"\x04" + bytes(131)],
    6: [bytes(32)],
    7: [b"\x04" + bytes(96), b"\x04" + b"\x01" * 96],
}


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_malformed_hpke_keys_raise_crypto_error(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    private, public = suite.generate_key_pair()
    for bad_public in _BAD_HPKE_PUBLIC[suite_id]:
        with pytest.raises(CryptoError):
            suite.encrypt_with_label(bad_public, b"L", b"", b"x")
    kem_output, ciphertext = suite.encrypt_with_label(public, b"L", b"", b"x")
    for bad_private in (b"", private + b"\x00", b"\xff" * len(private) if suite_id in (2, 5, 7) else b"\x01"):
        with pytest.raises(CryptoError):
            suite.decrypt_with_label(bad_private, b"L", b"", kem_output, ciphertext)
        with pytest.raises(CryptoError):
            suite.hpke_public_key(bad_private)
    with pytest.raises(CryptoError):
        suite.decrypt_with_label(private, b"L", b"", kem_output[:-1], ciphertext)


@pytest.mark.parametrize("suite_id", [2, 5, 7])
def test_zero_scalar_is_rejected(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    size = len(suite.generate_key_pair()[0])
    with pytest.raises(CryptoError):
        suite.hpke_public_key(bytes(size))
    with pytest.raises(CryptoError):
        suite.signature_public_key(bytes(size))


@pytest.mark.parametrize("suite_id", [1, 3, 4, 6])
def test_small_order_point_raises_crypto_error(suite_id: int) -> None:
    """An all-zero X25519/X448 public key yields an all-zero DH output (RFC 7748 §6)."""
    suite = cipher_suite(suite_id)
    size = len(suite.generate_key_pair()[1])
    with pytest.raises(CryptoError):
        suite.encrypt_with_label(bytes(size), b"L", b"", b"x")


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_malformed_signature_material(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    sig_private, sig_public = suite.generate_signature_key_pair()
    signature = suite.sign_with_label(sig_private, b"L", b"c")
    for bad_signature in (b"", b"\x30\x00", signature[:-1], _flip(signature, len(signature) - 1)):
        with pytest.raises(SignatureError):
            suite.verify_with_label(sig_public, b"L", b"c", bad_signature)
    # (a changed first byte, never the same one: writing 0x02 over a key starting with 0x02 changed nothing)
    for bad_public in (b"", sig_public[:-1], bytes([sig_public[0] ^ 0x02]) + sig_public[1:]):
        with pytest.raises(CryptoError):
            suite.verify_with_label(bad_public, b"L", b"c", signature)
    for bad_private in (b"", sig_private + b"\x00"):
        with pytest.raises(CryptoError):
            suite.sign_with_label(bad_private, b"L", b"c")


def test_short_p521_signature_key_is_left_padded() -> None:
    """P-521 scalars with a leading zero byte appear as 65 bytes in the vectors."""
    suite = cipher_suite(5)
    short = b"\x01" + b"\x5a" * 64
    public = suite.signature_public_key(short)
    assert public == suite.signature_public_key(b"\x00" + short)
    suite.verify_with_label(public, b"L", b"c", suite.sign_with_label(short, b"L", b"c"))


def test_expand_too_long_raises_crypto_error() -> None:
    suite = cipher_suite(1)
    with pytest.raises(CryptoError):
        suite.kdf_expand(b"k" * 32, b"", 255 * 32 + 1)


# --- tree math ----------------------------------------------------------------------------------


def test_tree_math_examples() -> None:
    """The eight-leaf tree drawn in RFC 9420 Appendix C."""
    assert tree_math.root(8) == 7
    assert tree_math.direct_path(0, 8) == [1, 3, 7]
    assert tree_math.copath(0, 8) == [2, 5, 11]
    assert tree_math.direct_path(7, 8) == []
    assert tree_math.copath(7, 8) == []
    assert tree_math.common_ancestor(0, 6) == 3
    assert tree_math.common_ancestor(4, 10) == 7
    assert tree_math.common_ancestor(5, 4) == 5
    assert [tree_math.level(x) for x in range(8)] == [0, 1, 0, 2, 0, 1, 0, 3]
    assert list(tree_math.subtree_leaves(3)) == [0, 1, 2, 3]
    assert list(tree_math.subtree_leaves(11)) == [4, 5, 6, 7]
    assert tree_math.leaf_to_node(3) == 6 and tree_math.node_to_leaf(6) == 3
    assert tree_math.node_width(0) == 0 and tree_math.leaf_width(15) == 8


def test_tree_math_errors() -> None:
    with pytest.raises(TreeMathError):
        tree_math.left(4)
    with pytest.raises(TreeMathError):
        tree_math.right(0)
    with pytest.raises(TreeMathError):
        tree_math.parent(7, 8)
    with pytest.raises(TreeMathError):
        tree_math.sibling(3, 4)
    with pytest.raises(TreeMathError):
        tree_math.parent(15, 8)
    with pytest.raises(TreeMathError):
        tree_math.direct_path(-1, 8)
    with pytest.raises(TreeMathError):
        tree_math.root(6)
    with pytest.raises(TreeMathError):
        tree_math.copath(0, 0)
    with pytest.raises(TreeMathError):
        tree_math.node_to_leaf(5)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), log_leaves=st.integers(min_value=0, max_value=10))
def test_tree_math_properties(data: st.DataObject, log_leaves: int) -> None:
    n = 1 << log_leaves
    width = tree_math.node_width(n)
    x = data.draw(st.integers(min_value=0, max_value=width - 1))
    y = data.draw(st.integers(min_value=0, max_value=width - 1))
    path = tree_math.direct_path(x, n)
    copath = tree_math.copath(x, n)
    assert len(path) == len(copath) == log_leaves - tree_math.level(x)
    assert (path[-1] if path else x) == tree_math.root(n)
    for node, other in zip([x, *path[:-1]], copath):
        assert tree_math.sibling(node, n) == other
        assert tree_math.sibling(other, n) == node
        assert tree_math.parent(node, n) == tree_math.parent(other, n)
    # common_ancestor equals the lowest node common to both direct paths (common_ancestor_semantic)
    shared = ({x} | set(path)) & ({y} | set(tree_math.direct_path(y, n)))
    assert tree_math.common_ancestor(x, y) == min(shared, key=tree_math.level)
    for leaf in range(n):
        under = leaf in tree_math.subtree_leaves(x)
        assert under == (x == 2 * leaf or x in tree_math.direct_path(2 * leaf, n))
        assert under == tree_math.is_in_subtree(2 * leaf, x)



@pytest.mark.parametrize("kem_id", [0x0010, 0x0011, 0x0012])
def test_curve_orders_used_by_derive_key_pair(kem_id: int) -> None:
    """(order - 1) * G = -G: same x-coordinate as G, other y; the order itself is no scalar."""
    kem = EcKem(kem_id)
    generator = ec.derive_private_key(1, kem.curve).public_key().public_numbers()
    negated = ec.derive_private_key(kem.order - 1, kem.curve).public_key().public_numbers()
    assert negated.x == generator.x
    assert negated.y != generator.y
    assert len(kem.order.to_bytes(kem.Nsk, "big")) == kem.Nsk
    with pytest.raises(CryptoError):
        kem.public_key(kem.order.to_bytes(kem.Nsk, "big"))
    kem.public_key((kem.order - 1).to_bytes(kem.Nsk, "big"))


# --- RFC 9180 Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM (suite 1) ---

_A11 = {
    "info": "4f6465206f6e2061204772656369616e2055726e",
    "ikmE": "7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234",
    "pkEm": "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
    "ikmR": "6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037",
    "pkRm": "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d",
    "skRm": "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8",
    "pt": "4265617574792069732074727574682c20747275746820626561757479",
    "aad0": "436f756e742d30",
    "ct0": "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
}
_A11_EXPORTS = [
    ("", "3853fe2b4035195a573ffc53856e77058e15d9ea064de3e59f4961d0095250ee"),
    ("00", "2e8f0b54673c7029649d4eb9d5e33bf1872cf76d623ff164ac185da9e88c21a5"),
    ("54657374436f6e74657874", "e9e43065102c3836401bed8c3c3c75ae46be1639869391d62c61f1ec7af54931"),
]


def test_rfc9180_a11_derive_open_and_export() -> None:
    suite = cipher_suite(1)
    v = {name: bytes.fromhex(value) for name, value in _A11.items()}
    assert suite.derive_key_pair(v["ikmR"]) == (v["skRm"], v["pkRm"])
    assert suite.derive_key_pair(v["ikmE"])[1] == v["pkEm"]
    assert suite.hpke_open(v["skRm"], v["pkEm"], v["info"], v["aad0"], v["ct0"]) == v["pt"]
    for context, exported in _A11_EXPORTS:
        got = suite.hpke_export_receiver(v["pkEm"], v["skRm"], v["info"], bytes.fromhex(context), 32)
        assert got.hex() == exported


@pytest.mark.parametrize("suite_id", ALL_SUITES)
def test_hpke_export_round_trip(suite_id: int) -> None:
    suite = cipher_suite(suite_id)
    private, public = suite.generate_key_pair()
    label = b"MLS 1.0 external init secret"
    kem_output, secret = suite.hpke_export_sender(public, b"", label, suite.Nh)
    assert len(secret) == suite.Nh
    assert suite.hpke_export_receiver(kem_output, private, b"", label, suite.Nh) == secret
    assert suite.hpke_export_receiver(kem_output, private, b"", b"other", suite.Nh) != secret
    with pytest.raises(CryptoError):
        suite.hpke_export_receiver(kem_output[:-1], private, b"", label, suite.Nh)

"""Room tokens (signaling.tokens): minting, verification and every refusal."""

from __future__ import annotations

import base64
import json
import stat
import threading

import pytest
from cryptography.hazmat.primitives import hashes, hmac

from signaling.errors import ErrorCode, SignalingError, TokenError
from signaling.protocol import validate_identity
from signaling.tokens import TokenAuthority, load_or_create_secret

SECRET = bytes(range(32))
NOW = 1_800_000_000


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(SECRET)


def test_mint_then_verify(authority: TokenAuthority) -> None:
    token = authority.mint("room-1", "alice", 60, now=NOW)
    claims = authority.verify(token, "room-1", now=NOW + 59)
    assert (claims.room, claims.identity, claims.expires) == ("room-1", "alice", NOW + 60)


@pytest.mark.parametrize("token, code", [
    (None, ErrorCode.UNAUTHORIZED),
    ("", ErrorCode.UNAUTHORIZED),
    (42, ErrorCode.TOKEN_INVALID),
    ("not-a-token", ErrorCode.TOKEN_INVALID),
    ("mlscall1.e30.AAAA", ErrorCode.TOKEN_INVALID),
    ("mlscall1.!!!.???", ErrorCode.TOKEN_INVALID),
    ("x" * 5000, ErrorCode.TOKEN_INVALID),
])
def test_malformed_tokens_are_refused(authority: TokenAuthority, token: object, code: ErrorCode) -> None:
    with pytest.raises(TokenError) as info:
        authority.verify(token, "room-1", now=NOW)
    assert info.value.code == code


def test_expired_token(authority: TokenAuthority) -> None:
    token = authority.mint("room-1", "alice", 60, now=NOW)
    with pytest.raises(TokenError) as info:
        authority.verify(token, "room-1", now=NOW + 60)
    assert info.value.code == ErrorCode.TOKEN_EXPIRED


def test_wrong_room(authority: TokenAuthority) -> None:
    token = authority.mint("room-1", "alice", 60, now=NOW)
    with pytest.raises(TokenError) as info:
        authority.verify(token, "room-2", now=NOW)
    assert info.value.code == ErrorCode.WRONG_ROOM


def test_forged_tokens(authority: TokenAuthority) -> None:
    token = authority.mint("room-1", "alice", 60, now=NOW)
    other = TokenAuthority(bytes(32)).mint("room-1", "alice", 60, now=NOW)
    prefix, payload, tag = token.split(".")
    flipped_tag = tag[:-2] + ("A" if tag[-2] != "A" else "B") + tag[-1]
    mallory = authority.mint("room-1", "mallory", 60, now=NOW)
    swapped_payload = ".".join([prefix, mallory.split(".")[1], tag])
    for forged in (other, f"{prefix}.{payload}.{flipped_tag}", swapped_payload):
        with pytest.raises(TokenError) as info:
            authority.verify(forged, "room-1", now=NOW)
        assert info.value.code == ErrorCode.TOKEN_INVALID
        assert forged not in str(info.value)


def test_invalid_room_or_identity_cannot_be_minted(authority: TokenAuthority) -> None:
    with pytest.raises(SignalingError):
        authority.mint("room with spaces", "alice", 60)
    with pytest.raises(SignalingError):
        authority.mint("room", "", 60)


def test_secret_never_in_repr(authority: TokenAuthority) -> None:
    assert SECRET.hex() not in repr(authority) and repr(SECRET) not in repr(authority)


def test_short_secret_rejected() -> None:
    with pytest.raises(ValueError):
        TokenAuthority(b"short")


def test_secret_file_created_once_with_private_mode(tmp_path) -> None:
    path = tmp_path / "server.secret"
    first = load_or_create_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first
    other = tmp_path / "other.secret"
    assert load_or_create_secret(other) != first


def test_instances_starting_together_share_one_secret(tmp_path) -> None:
    """Several servers starting at once on a missing secret file: none sees a partial file
    (too short), exactly one secret is created and every one of them reads it."""
    racers = 4
    for trial in range(100):
        path = tmp_path / f"race{trial}.secret"
        start = threading.Barrier(racers)
        secrets_read: list[bytes] = []
        failures: list[BaseException] = []

        def race() -> None:
            start.wait()
            try:
                secrets_read.append(load_or_create_secret(path))
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                failures.append(exc)

        threads = [threading.Thread(target=race) for _ in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == [], f"trial {trial}: {failures!r}"
        assert len(secrets_read) == racers and len(set(secrets_read)) == 1
        assert path.read_bytes() == secrets_read[0] and len(secrets_read[0]) == 32
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f"race{trial}.")] == [path.name]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(payload: bytes) -> str:
    """A token over ``payload`` signed with the authority's real secret."""
    signed = "mlscall1." + _b64url(payload)
    mac = hmac.HMAC(SECRET, hashes.SHA256())
    mac.update(signed.encode())
    return signed + "." + _b64url(mac.finalize())


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def test_only_the_canonical_spelling_of_a_tag_verifies(authority: TokenAuthority) -> None:
    """One token, one spelling: the HMAC bytes decoded leniently would be the same for all these."""
    token = authority.mint("room-1", "alice", 60, now=NOW)
    signed, _, tag = token.rpartition(".")
    last = _ALPHABET.index(tag[-1])
    spellings = [tag[:-1] + _ALPHABET[last ^ bit] for bit in (1, 2, 3)]  # the 2 unused trailing bits
    spellings += [tag + "=", tag + "==", tag[:8] + "=" + tag[8:], tag + ".", " " + tag]
    for text in spellings:
        assert base64.urlsafe_b64decode(text.strip().replace(".", "") + "==") == \
            base64.urlsafe_b64decode(tag + "=")  # the same bytes
        with pytest.raises(TokenError) as info:
            authority.verify(f"{signed}.{text}", "room-1", now=NOW)
        assert info.value.code == ErrorCode.TOKEN_INVALID, text
    assert authority.verify(token, "room-1", now=NOW).identity == "alice"


def test_a_tag_in_the_standard_alphabet_is_refused(authority: TokenAuthority) -> None:
    for identity in (f"user{i}" for i in range(500)):
        token = authority.mint("room-1", identity, 60, now=NOW)
        signed, _, tag = token.rpartition(".")
        if "-" in tag or "_" in tag:
            break
    else:
        raise AssertionError("no tag with - or _ among 500")
    standard = tag.replace("-", "+").replace("_", "/")
    assert base64.b64decode(standard + "=") == base64.urlsafe_b64decode(tag + "=")
    with pytest.raises(TokenError) as info:
        authority.verify(f"{signed}.{standard}", "room-1", now=NOW)
    assert info.value.code == ErrorCode.TOKEN_INVALID


def test_a_noncanonical_payload_is_refused_even_when_signed(authority: TokenAuthority) -> None:
    """The payload part too: trailing bits set, signed over that spelling with the real secret."""
    payload = b'{"exp":1800000060,"room":"room-1","sub":"alice1"}'
    text = _b64url(payload)
    assert len(payload) % 3  # so its last character has unused bits
    last = _ALPHABET.index(text[-1])
    odd = text[:-1] + _ALPHABET[last | 1]
    assert odd != text
    signed = "mlscall1." + odd
    mac = hmac.HMAC(SECRET, hashes.SHA256())
    mac.update(signed.encode())
    with pytest.raises(TokenError) as info:
        authority.verify(signed + "." + _b64url(mac.finalize()), "room-1", now=NOW)
    assert info.value.code == ErrorCode.TOKEN_INVALID
    assert authority.verify(_sign(payload), "room-1", now=NOW).identity == "alice1"


@pytest.mark.parametrize("claims", [
    {"exp": NOW + 60, "room": "room-1", "sub": ""},
    {"exp": NOW + 60, "room": "room-1", "sub": "x" * 200},
    {"exp": NOW + 60, "room": "room-1", "sub": "x" * 129},
    {"exp": NOW + 60, "room": "room-1", "sub": "tab\there"},
    {"exp": NOW + 60, "room": "room-1", "sub": ["alice"]},
    {"exp": NOW + 60, "room": "bad room", "sub": "alice"},
    {"exp": NOW + 60, "room": "", "sub": "alice"},
    {"exp": True, "room": "room-1", "sub": "alice"},
    {"exp": float(NOW + 60), "room": "room-1", "sub": "alice"},
    {"room": "room-1", "sub": "alice"},
])
def test_signed_claims_a_join_would_refuse_are_invalid(authority: TokenAuthority, claims: dict) -> None:
    token = _sign(json.dumps(claims, separators=(",", ":")).encode())
    with pytest.raises(TokenError) as info:
        authority.verify(token, claims.get("room") or "room-1", now=NOW)
    assert info.value.code == ErrorCode.TOKEN_INVALID


def test_claims_use_the_join_rules() -> None:
    """The 128-character identity a join takes is also the longest a token may name."""
    authority = TokenAuthority(SECRET)
    longest = "x" * 128
    token = _sign(json.dumps({"exp": NOW + 60, "room": "room-1", "sub": longest}).encode())
    assert authority.verify(token, "room-1", now=NOW).identity == longest
    assert validate_identity(longest) == longest
    with pytest.raises(SignalingError):
        validate_identity(longest + "x")


@pytest.mark.parametrize("payload", [b"NaN", b'{"exp":1e400,"room":"room-1","sub":"alice"}',
                                     b'{"exp":Infinity,"room":"room-1","sub":"alice"}', b"\xff\xfe",
                                     b"[]", b'{"exp":1,"room":"room-1"'])
def test_unreadable_signed_payloads_are_invalid(authority: TokenAuthority, payload: bytes) -> None:
    with pytest.raises(TokenError) as info:
        authority.verify(_sign(payload), "room-1", now=NOW)
    assert info.value.code == ErrorCode.TOKEN_INVALID

"""Room tokens (signaling.tokens): minting, verification and every refusal."""

from __future__ import annotations

import stat

import pytest

from signaling.errors import ErrorCode, SignalingError, TokenError
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

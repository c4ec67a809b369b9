"""Shared contracts of Python and JS (tests/contracts/, README.md there), case by case:

* verification_code.json: the verification code of an epoch authenticator
  (RFC 9420 §8.7) by ``media.verification.verification_code``;
* kid_layout.json: the SFrame KID of an MLS sender (RFC 9605 §5.2) by
  ``sframe.mls_kid``, ``index_bits_for`` and ``MLSKeyManager.kid_for``;
* codec_clear_bytes.json: the codec-aware clear bytes of encoded frames
  (RFC 9605 §4.4 metadata) by ``media.framing``.

web/test/contracts-shared.test.js runs the same files against web/.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import media.errors
import sframe.errors
from media.errors import MediaError
from media.framing import (
    FrameCodec,
    escape_emulation,
    frame_codec,
    is_keyframe,
    open_frame,
    seal_frame,
    split_annex_b,
    unescape_emulation,
)
from media.verification import verification_code
from sframe import MLSKeyManager, mls_kid
from sframe.mls_keys import index_bits_for

from conftest import CONTRACTS

VERIFICATION = json.loads((CONTRACTS / "verification_code.json").read_text())
KID = json.loads((CONTRACTS / "kid_layout.json").read_text())
CODEC = json.loads((CONTRACTS / "codec_clear_bytes.json").read_text())


def error_class(name: str) -> type[Exception]:
    """The class a fixture's ``error`` names, from ``sframe.errors`` or ``media.errors``."""
    cls = getattr(sframe.errors, name, None) or getattr(media.errors, name)
    assert isinstance(cls, type) and issubclass(cls, Exception)
    return cls


def names(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


# --- verification code -------------------------------------------------------------


@pytest.mark.parametrize("case", VERIFICATION["cases"], ids=names(VERIFICATION["cases"]))
def test_verification_code(case: dict[str, Any]) -> None:
    authenticator = bytes.fromhex(case["epoch_authenticator"])
    if case.get("rejected"):
        with pytest.raises(MediaError):
            verification_code(authenticator)
    else:
        assert verification_code(authenticator) == case["code"]


def test_verification_codes_differ_per_authenticator() -> None:
    codes = [c["code"] for c in VERIFICATION["cases"] if "code" in c]
    assert len(set(codes)) == len(codes) >= 8


# --- KID layout --------------------------------------------------------------------


@pytest.mark.parametrize("case", KID["layout"], ids=names(KID["layout"]))
def test_kid_layout(case: dict[str, Any]) -> None:
    args = (int(case["epoch"]), case["sender_index"], int(case["context"]), case["epoch_bits"], case["index_bits"])
    if "error" in case:
        with pytest.raises(error_class(case["error"])):
            mls_kid(*args)
    else:
        assert mls_kid(*args) == int(case["kid"])


@pytest.mark.parametrize("case", KID["index_bits"], ids=[str(c["group_size"]) for c in KID["index_bits"]])
def test_index_bits_for_group_size(case: dict[str, Any]) -> None:
    assert index_bits_for(case["group_size"]) == case["index_bits"]


class _ZeroExporter:
    def export_secret(self, label: bytes, context: bytes, length: int) -> bytes:
        return bytes(length)


@pytest.mark.parametrize("case", KID["manager"], ids=names(KID["manager"]))
def test_key_manager_kid(case: dict[str, Any]) -> None:
    manager = MLSKeyManager(epoch_bits=case["epoch_bits"], index_bits=case["index_bits"])
    manager.install_epoch(_ZeroExporter(), case["epoch"], 0, case["group_size"])
    assert manager.kid_for(case["epoch"], case["sender_index"], case["context"]) == int(case["kid"])


# --- codec-aware clear bytes -------------------------------------------------------


@pytest.mark.parametrize("case", CODEC["frames"], ids=names(CODEC["frames"]))
def test_frame_seal_and_open(case: dict[str, Any]) -> None:
    codec = FrameCodec(case["codec"])
    frame = bytes.fromhex(case["frame"])
    assert is_keyframe(codec, frame) is case["keyframe"]
    sealed: list[tuple[bytes, bytes]] = []

    def seal(plaintext: bytes, metadata: bytes) -> bytes:
        sealed.append((plaintext, metadata))
        return bytes.fromhex(case["sframe"])

    if "seal_error" in case:
        with pytest.raises(error_class(case["seal_error"])):
            seal_frame(codec, frame, seal)
        assert sealed == []
        return
    wire = seal_frame(codec, frame, seal)
    assert sealed == [(bytes.fromhex(case["plaintext"]), bytes.fromhex(case["metadata"]))]
    assert wire.hex() == case["wire"]
    assert is_keyframe(codec, wire) is case["keyframe"]  # read from the clear bytes only
    opened: list[tuple[bytes, bytes]] = []

    def open_(ciphertext: bytes, metadata: bytes) -> bytes:
        opened.append((ciphertext, metadata))
        return bytes.fromhex(case["plaintext"])

    assert open_frame(codec, wire, open_).hex() == case.get("opened", case["frame"])
    assert opened == [(bytes.fromhex(case["sframe"]), bytes.fromhex(case["metadata"]))]


@pytest.mark.parametrize("case", CODEC["open_errors"], ids=names(CODEC["open_errors"]))
def test_frame_open_errors(case: dict[str, Any]) -> None:
    calls: list[bytes] = []
    with pytest.raises(error_class(case["error"])):
        open_frame(FrameCodec(case["codec"]), bytes.fromhex(case["wire"]), lambda ct, md: calls.append(ct) or b"")
    assert calls == []


@pytest.mark.parametrize("case", CODEC["emulation_prevention"], ids=names(CODEC["emulation_prevention"]))
def test_emulation_prevention(case: dict[str, Any]) -> None:
    raw, escaped = bytes.fromhex(case["raw"]), bytes.fromhex(case["escaped"])
    assert escape_emulation(raw) == escaped
    assert unescape_emulation(escaped) == raw
    for code in (b"\x00\x00\x00", b"\x00\x00\x01", b"\x00\x00\x02"):
        assert code not in escaped + b"\x80"


@pytest.mark.parametrize("case", CODEC["annex_b"], ids=names(CODEC["annex_b"]))
def test_split_annex_b(case: dict[str, Any]) -> None:
    stream = bytes.fromhex(case["stream"])
    if "error" in case:
        with pytest.raises(error_class(case["error"])):
            split_annex_b(stream)
    else:
        assert [unit.hex() for unit in split_annex_b(stream)] == case["units"]


@pytest.mark.parametrize("case", CODEC["mime_types"], ids=[c["mime_type"] for c in CODEC["mime_types"]])
def test_frame_codec_of_mime_type(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(error_class(case["error"])):
            frame_codec(case["mime_type"])
    else:
        assert frame_codec(case["mime_type"]) is FrameCodec(case["codec"])

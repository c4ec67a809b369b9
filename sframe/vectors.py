"""Runner for the official SFrame test vectors (RFC 9605 Appendix C).

``python -m sframe.vectors FILE...`` prints ``<file>: N passed, N failed``
per file and exits non-zero if any case failed.  Sections: ``header``
(§4.3), ``aes_ctr_hmac`` / ``aes_256_ctr_hmac`` (§4.5.1), ``sframe`` /
``sframe_aes_256_ctr_hmac`` (§4.4).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .context import SFrameContext, derive_key_salt
from .errors import SFrameError
from .header import decode_header, encode_header
from .suites import AesCtrHmac, suite_params

Case = dict[str, Any]


class VectorMismatch(Exception):
    """A computed value differs from the one in the vector."""


def _expect(name: str, got: object, want: object) -> None:
    if got != want:
        raise VectorMismatch(f"{name} mismatch")


def _hex(case: Case, name: str) -> bytes:
    return bytes.fromhex(case[name])


def check_header(case: Case) -> None:
    """``encode(kid, ctr) == encoded`` and ``decode(encoded) == (kid, ctr)``."""
    encoded = _hex(case, "encoded")
    _expect("encoded", encode_header(case["kid"], case["ctr"]), encoded)
    _expect("decoded", decode_header(encoded), (case["kid"], case["ctr"], len(encoded)))


def check_aes_ctr_hmac(case: Case) -> None:
    """``AEAD.Encrypt(key, nonce, aad, pt) == ct`` and the inverse (§4.5.1)."""
    params = suite_params(case["cipher_suite"])
    key = _hex(case, "key")
    _expect("enc_key", key[: params.nka], _hex(case, "enc_key"))
    _expect("auth_key", key[params.nka :], _hex(case, "auth_key"))
    aead = AesCtrHmac(params, key)
    nonce, aad, pt, ct = (_hex(case, n) for n in ("nonce", "aad", "pt", "ct"))
    _expect("ct", aead.encrypt(nonce, pt, aad), ct)
    _expect("pt", aead.decrypt(nonce, ct, aad), pt)


def check_sframe(case: Case) -> None:
    """``encrypt(ctr, kid, metadata, pt) == ct`` and ``decrypt(metadata, ct) == pt`` (§4.4)."""
    suite, kid, ctr = case["cipher_suite"], case["kid"], case["ctr"]
    base_key, metadata, pt, ct = (_hex(case, n) for n in ("base_key", "metadata", "pt", "ct"))
    sframe_key, sframe_salt = derive_key_salt(suite, kid, base_key)
    _expect("sframe_key", sframe_key, _hex(case, "sframe_key"))
    _expect("sframe_salt", sframe_salt, _hex(case, "sframe_salt"))
    if "nonce" in case:
        nonce = (int.from_bytes(sframe_salt, "big") ^ ctr).to_bytes(len(sframe_salt), "big")
        _expect("nonce", nonce, _hex(case, "nonce"))
    if "aad" in case:
        _expect("aad", encode_header(kid, ctr) + metadata, _hex(case, "aad"))
    sender = SFrameContext(suite)
    sender.add_send_key(kid, base_key, initial_counter=ctr)
    _expect("ct", sender.protect(kid, pt, metadata), ct)
    receiver = SFrameContext(suite)
    receiver.add_recv_key(kid, base_key)
    _expect("decrypted", tuple(receiver.unprotect(ct, metadata)), (kid, ctr, pt))


CHECKS: dict[str, Callable[[Case], None]] = {
    "header": check_header,
    "aes_ctr_hmac": check_aes_ctr_hmac,
    "aes_256_ctr_hmac": check_aes_ctr_hmac,
    "sframe": check_sframe,
    "sframe_aes_256_ctr_hmac": check_sframe,
}


def iter_cases(path: str | Path) -> Iterator[tuple[str, int, Case]]:
    """Every ``(section, index, case)`` of a vector file."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    for section, cases in data.items():
        for index, case in enumerate(cases):
            yield section, index, case


def check_case(section: str, case: Case) -> None:
    """Run one case; raises :class:`VectorMismatch`, :class:`SFrameError`
    or ``KeyError`` (missing field) on failure."""
    check = CHECKS.get(section)
    if check is None:
        raise VectorMismatch(f"unknown section {section!r}")
    check(case)


def run_file(path: str | Path, out: Callable[[str], None] | None = None) -> tuple[int, int]:
    """``(passed, failed)`` for one file; failures are described via ``out``."""
    passed = failed = 0
    for section, index, case in iter_cases(path):
        try:
            check_case(section, case)
        except (VectorMismatch, SFrameError, KeyError, ValueError, TypeError) as exc:
            failed += 1
            if out is not None:
                out(f"  {section}[{index}]: {type(exc).__name__}: {exc}")
        else:
            passed += 1
    return passed, failed


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    files = list(sys.argv[1:] if argv is None else argv)
    if not files:
        print("usage: python -m sframe.vectors FILE...", file=sys.stderr)
        return 2
    status = 0
    for name in files:
        try:
            passed, failed = run_file(name, out=lambda line: print(line, file=sys.stderr))
        except (OSError, json.JSONDecodeError, AttributeError, TypeError) as exc:
            print(f"{name}: cannot read vectors: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {passed} passed, {failed} failed")
        if failed:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())

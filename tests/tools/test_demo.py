"""``mlscall demo`` end to end: server + two bots on loopback, encrypted media both
ways, no frame lost while the second bot joins."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_runs_an_encrypted_call_and_summarises() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "media.cli", "demo", "--port", "0", "--duration", "8"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"Open http://127\.0\.0\.1:\d+/\?room=demo in a browser", result.stdout)
    summaries = re.findall(
        r"summary for (\S+):\n  frames sent:\s+(\d+)\n  frames received:\s+(\d+)\n"
        r"  frames decrypted:\s+(\d+)\n  frames decoded:\s+(\d+)\n"
        r"  failures:\s+(\d+) \(unknown_kid (\d+), authentication (\d+).*held_expired (\d+)\)",
        result.stdout)
    assert [name for name, *_ in summaries] == ["alice-bot", "bob-bot"]
    for _name, sent, _received, decrypted, decoded, failures, unknown_kid, authentication, expired \
            in summaries:
        assert int(sent) > 50
        assert int(decrypted) > 50 and int(decoded) > 50
        assert int(authentication) == 0
        # no frame lost while bob joined: alice sent him nothing before he was a
        # member, and only under an epoch his Welcome gave him
        assert (int(unknown_kid), int(expired), int(failures)) == (0, 0, 0)
    assert "final epoch:      1" in result.stdout  # bob was added: one commit

"""The genuine @trpc/client 11 (superjson 1.13.3 and 2.x, httpBatchLink and httpLink) drives
every procedure and error case against a running server (tests/client/compat.mjs)."""

from __future__ import annotations

import subprocess

import pytest

from tests.support import CLIENT_DIR, Server, install_client


@pytest.mark.node
def test_genuine_trpc_client_drives_every_procedure(server: Server, images: str) -> None:
    install_client()
    result = subprocess.run(
        ["node", "compat.mjs", server.trpc, server.token("compat-user-a", "Compat A"),
         server.token("compat-user-b", "Compat B"), f"{images}/red.png"],
        cwd=CLIENT_DIR, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    failures = [line for line in result.stdout.splitlines() if line.startswith("not ok")]
    assert result.returncode == 0 and not failures, (
        "\n".join(failures) or result.stdout[-3000:] + result.stderr[-3000:]
    )
    assert "0 failed" in result.stdout.splitlines()[-1]

"""The release path: zizmor (GitHub Actions static analysis) finds nothing in .github/workflows.

Every action pinned to a full commit SHA (its version in a comment), no checkout persisting
its token, least-privilege permissions per job, trusted publishing. `--offline`: no GitHub API.
The workflows do not depend on the core: this runs once, on the compiled-core pass (skipped when
DJANGO_PROMETHEUS_NO_EXTENSIONS is set, as the pure pass of `make test` and CI set it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"

pytestmark = pytest.mark.skipif(
    os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS") == "1",
    reason="independent of the core: checked once, on the compiled pass",
)


def _zizmor() -> str:
    path = Path(sys.executable).parent / "zizmor"
    found = str(path) if path.exists() else shutil.which("zizmor")
    if found is None:
        if sys.version_info < (3, 11):
            pytest.skip("zizmor needs Python 3.11+ (the test extra installs it there)")
        pytest.fail("zizmor is not installed: it is in the test extra (`pip install '.[test]'`)")
    return found


def test_zizmor_offline_finds_nothing():
    res = subprocess.run(
        [_zizmor(), "--offline", "--no-progress", str(WORKFLOWS)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No findings" in res.stdout + res.stderr, res.stdout + res.stderr


def test_every_action_is_pinned_to_a_commit_with_its_version_named():
    uses = [
        line.strip()
        for f in sorted(WORKFLOWS.glob("*.yml"))
        for line in f.read_text().splitlines()
        if re.match(r"\s*(- )?uses:", line)
    ]
    assert len(uses) >= 10, uses
    pinned = re.compile(r"(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40}  # v\d+(\.\d+)*$")
    assert [u for u in uses if not pinned.match(u)] == []


def test_only_the_publish_job_may_mint_an_id_token():
    text = (WORKFLOWS / "wheels.yml").read_text()
    assert text.count("id-token: write") == 1
    publish = text[text.index("\n  publish:") :]
    assert "id-token: write" in publish and "password:" not in publish

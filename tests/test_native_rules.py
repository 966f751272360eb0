"""The native histogram rules in examples/: promtool's unit tests, as far as Prometheus 2.42's go.

2.42's promtool cannot load native histograms into a rule test (its series notation has
no ``{{schema:... buckets:[...]}}``: that came later), so the recording rules are
evaluated on real native series by tests/test_e2e_native.py; here the alert on the
recorded p99 and the rules' behaviour on classic series (they record nothing) are
unit-tested, and we pin that 2.42 still refuses native input, so the day Debian's
promtool can, this test says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "examples" / "prometheus" / "django.native.rules.yml"
RULE_TESTS = ROOT / "examples" / "prometheus" / "tests" / "django.native.rules.test.yml"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("`promtool` is not installed: `scripts/services.sh install` installs Debian's prometheus")
    return path


def test_native_rules_pass_promtool_unit_tests():
    unit = subprocess.run(
        [_promtool(), "test", "rules", str(RULE_TESTS)],
        capture_output=True, text=True, timeout=120, cwd=RULE_TESTS.parent,
    )  # fmt: skip
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_every_native_rule_is_exercised_by_the_unit_tests():
    recorded = set(re.findall(r"^\s*- record: (\S+)", RULES.read_text(), re.M))
    alerts = set(re.findall(r"^\s*- alert: (\S+)", RULES.read_text(), re.M))
    tests = RULE_TESTS.read_text()
    assert recorded and alerts
    missing = {name for name in recorded | alerts if name not in tests}
    assert not missing, missing


def test_prometheus_2_42_promtool_cannot_load_native_histograms(tmp_path):
    (tmp_path / "t.yml").write_text(
        "tests:\n"
        "  - interval: 1m\n"
        "    input_series:\n"
        "      - series: 'x'\n"
        "        values: '{{schema:0 sum:5 count:4 buckets:[1 2 1]}}x10'\n"
        "    promql_expr_test:\n"
        "      - expr: histogram_count(x)\n"
        "        eval_time: 5m\n"
        "        exp_samples: [{labels: '{}', value: 4}]\n"
    )
    unit = subprocess.run(
        [_promtool(), "test", "rules", "t.yml"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    version = subprocess.run([_promtool(), "--version"], capture_output=True, text=True).stdout
    if unit.returncode == 0:  # a newer promtool: native rule tests can be written now
        pytest.fail(f"{version.splitlines()[0]} loads native histograms: unit-test the native rules on them")
    assert "unexpected character in series sequence: '{'" in unit.stdout + unit.stderr

"""The background-work rules and dashboard: promtool passes them, and every name they use is ours."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from django_prometheus import celery_metrics, command_metrics, task_metrics

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "examples" / "prometheus" / "background.rules.yml"
RULE_TESTS = ROOT / "examples" / "prometheus" / "tests" / "background.rules.test.yml"
DASHBOARD = ROOT / "examples" / "grafana" / "django-background.json"
_NAME = re.compile(r"(?<![\w:])((?:django_tasks|django_command|celery)_[a-z0-9_]+)(?![\w:])")


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("`promtool` is not installed: `scripts/services.sh install` installs Debian's prometheus")
    return path


def test_background_rules_pass_promtool_check_and_unit_tests():
    check = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [_promtool(), "test", "rules", str(RULE_TESTS)],
        capture_output=True, text=True, timeout=120, cwd=RULE_TESTS.parent,
    )  # fmt: skip
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def _exposed_names() -> set[str]:
    names = set(command_metrics.DELIVERED)
    for module in (task_metrics, celery_metrics, command_metrics):
        for family in module.FAMILIES:
            for metric in family.describe():
                kind, name = metric.type, metric.name
                if kind == "counter":
                    names.add(name + "_total")
                elif kind == "histogram":
                    names |= {name + "_bucket", name + "_count", name + "_sum"}
                else:
                    names.add(name)
    return names


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if isinstance(v.get("query"), dict)]
    return exprs


def test_every_name_in_the_rules_and_dashboard_is_a_family_we_expose():
    exposed = _exposed_names()
    exprs = _dashboard_exprs()
    assert len(exprs) >= 15
    used = {n for e in exprs for n in _NAME.findall(e)} | set(_NAME.findall(RULES.read_text()))
    assert {"django_tasks_finished_total", "celery_task_failed_total",
            "django_command_last_success_timestamp_seconds"} <= used  # fmt: skip
    assert used <= exposed, sorted(used - exposed)

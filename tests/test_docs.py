"""The README says what the code does: its metrics reference is generated from the code."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

import django_prometheus

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

_spec = importlib.util.spec_from_file_location("metrics_reference", ROOT / "scripts" / "metrics_reference.py")
metrics_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(metrics_reference)


def _section(name: str) -> str:
    start = README.index(f"<!-- section: {name} -->")
    nxt = README.find("\n## ", start)
    return README[start : nxt if nxt != -1 else len(README)]


def test_readme_metrics_reference_is_what_the_code_generates():
    in_readme = metrics_reference.current(README)
    assert in_readme is not None, "README.md lacks the metrics reference markers"
    assert in_readme == metrics_reference.render(), "run: python scripts/metrics_reference.py --write"
    assert in_readme in _section("metrics")


def _package_metrics() -> dict[str, MetricWrapperBase]:
    """Every metric object defined at module level anywhere in the package (backends aside)."""
    found = {}
    for info in pkgutil.walk_packages(django_prometheus.__path__, "django_prometheus."):
        if ".backends" in info.name or "._core" in info.name or info.name.endswith(".testutils"):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, MetricWrapperBase):
                found[obj._name] = obj
    from django_prometheus.middleware import Metrics

    for obj in vars(Metrics.get_instance()).values():
        if isinstance(obj, MetricWrapperBase):
            found[obj._name] = obj
    return found


def test_every_metric_family_in_the_package_is_in_the_reference():
    found = _package_metrics()
    assert len(found) >= 34  # 19 HTTP + 4 cache + 6 DB + 3 model + 2 migration families
    block = metrics_reference.current(README)
    missing = [name for name in found if f"`{name}" not in block]
    assert not missing, f"metric families missing from the README reference: {missing}"


def test_every_setting_the_code_reads_is_documented():
    read = set()
    for path in (ROOT / "src" / "django_prometheus").rglob("*.py"):
        read |= set(re.findall(r"\b(PROMETHEUS_[A-Z_]+)\b", path.read_text()))
    assert {
        "PROMETHEUS_LATENCY_BUCKETS",
        "PROMETHEUS_METRIC_NAMESPACE",
        "PROMETHEUS_EXPORT_MIGRATIONS",
    } <= read
    settings_doc = _section("settings")
    undocumented = sorted(name for name in read if f"`{name}`" not in settings_doc)
    assert not undocumented, f"settings read by the code but not in the README: {undocumented}"


def test_readme_starts_with_the_two_commands():
    first_block = README[README.index("```sh") : README.index("```", README.index("```sh") + 5)]
    assert "make demo" in first_block and "make test" in first_block


def test_every_make_target_the_readme_names_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z][\w-]*)", README))
    assert named, "the README names no make target"
    assert named <= targets, f"README names make targets that do not exist: {sorted(named - targets)}"

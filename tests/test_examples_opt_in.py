"""The example rules and dashboards: the part said to work on upstream 2.5 uses upstream's families only.

``examples/prometheus/django.rules.yml`` keeps the rules that need our opt-in families in
its own group (``django.opt_in.recording``), each section naming its setting;
``examples/grafana/django.json`` keeps its panels under rows titled ``Opt-in: ...``, each
panel's description naming its setting. Everything else must run on a site still on
django-prometheus 2.5: these tests hold both halves to that, from upstream's family list
(the compatibility contract), not from what our package happens to register.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "examples" / "prometheus" / "django.rules.yml"
INSTANCES_RULES = ROOT / "examples" / "deploy" / "prometheus" / "instances.rules.yml"
DASHBOARD = ROOT / "examples" / "grafana" / "django.json"
DASHBOARDS = sorted((ROOT / "examples" / "grafana").glob("*.json"))
OPT_IN_GROUP = "django.opt_in.recording"
OPT_IN_ROW = "Opt-in: "
OPT_IN_PANEL = "Needs django-prometheus-compiled with "

# django-prometheus 2.5.0's families as exposed (CONTRACT.md "Metrics"), by type.
UPSTREAM_COUNTERS = (
    "django_http_requests_before_middlewares_total",
    "django_http_responses_before_middlewares_total",
    "django_http_requests_unknown_latency_including_middlewares_total",
    "django_http_requests_unknown_latency_total",
    "django_http_ajax_requests_total",
    "django_http_requests_total_by_method",
    "django_http_requests_total_by_transport",
    "django_http_requests_total_by_view_transport_method",
    "django_http_responses_total_by_templatename",
    "django_http_responses_total_by_status",
    "django_http_responses_total_by_status_view_method",
    "django_http_responses_total_by_charset",
    "django_http_responses_streaming_total",
    "django_http_exceptions_total_by_type",
    "django_http_exceptions_total_by_view",
    "django_db_new_connections_total",
    "django_db_new_connection_errors_total",
    "django_db_execute_total",
    "django_db_execute_many_total",
    "django_db_errors_total",
    "django_cache_get_total",
    "django_cache_get_hits_total",
    "django_cache_get_misses_total",
    "django_cache_get_fail_total",
    "django_model_inserts_total",
    "django_model_updates_total",
    "django_model_deletes_total",
)
UPSTREAM_HISTOGRAMS = (
    "django_http_requests_latency_including_middlewares_seconds",
    "django_http_requests_latency_seconds_by_view_method",
    "django_http_requests_body_total_bytes",
    "django_http_responses_body_total_bytes",
    "django_db_query_duration_seconds",
)
UPSTREAM_GAUGES = ("django_migrations_unapplied_total", "django_migrations_applied_total")


def _samples() -> set[str]:
    """Every sample name upstream's families expose (prometheus_client's suffixes)."""
    names = set(UPSTREAM_GAUGES)
    for counter in UPSTREAM_COUNTERS:
        base = counter.removesuffix("_total")
        names |= {base + "_total", base + "_created"}
    for histogram in UPSTREAM_HISTOGRAMS:
        names |= {histogram + suffix for suffix in ("_bucket", "_count", "_sum", "_created")}
    return names


UPSTREAM = _samples()

# Our families the examples use -> what a site must set to have them (named where they are used).
OPT_IN = {
    "django_http_route_requests_total": "PROMETHEUS_ROUTE_METRICS",
    "django_http_route_request_duration_seconds": "PROMETHEUS_ROUTE_METRICS",
    "django_http_requests_in_progress": "PROMETHEUS_INFLIGHT_METRICS",
    "django_http_request_queue_seconds": "PROMETHEUS_QUEUE_TIME_METRICS",
    "django_http_request_db_queries": "PROMETHEUS_REQUEST_DB_METRICS",
    "django_http_request_db_repeated_queries_total": "PROMETHEUS_REQUEST_DB_METRICS",
    "django_db_pool_connections": 'OPTIONS["pool"]',
    "django_db_pool_size": 'OPTIONS["pool"]',
    "django_cache_operations_total": "PROMETHEUS_CACHE_OPERATION_METRICS",
}

# A metric name in PromQL: recording rules' names (with colons) and label names are not.
_NAME = re.compile(r"(?<![\w:])(django_[a-z0-9_]+)(?![\w:])")


def _names(promql: str) -> set[str]:
    return set(_NAME.findall(promql))


def _opt_in_family(name: str) -> str:
    """Our family that exposes the sample ``name``; fails for a name neither upstream's nor listed."""
    for family in OPT_IN:
        if name == family or re.fullmatch(re.escape(family) + r"_(bucket|count|sum|created)", name):
            return family
    pytest.fail(f"{name} is neither upstream's nor in OPT_IN: add the setting that makes it")


def _settings(promql: str) -> set[str]:
    return {OPT_IN[_opt_in_family(n)] for n in _names(promql) - UPSTREAM}


def test_the_upstream_family_list_names_families_we_register():
    # The list is upstream's contract; each of its names is also one of ours (a typo fails here).
    import django_prometheus.cache.metrics  # noqa: F401
    import django_prometheus.db.metrics  # noqa: F401
    import django_prometheus.middleware
    import django_prometheus.migrations  # noqa: F401
    import django_prometheus.models  # noqa: F401

    django_prometheus.middleware.Metrics.get_instance()
    registered = set(REGISTRY._names_to_collectors)
    assert len(UPSTREAM_COUNTERS) + len(UPSTREAM_HISTOGRAMS) + len(UPSTREAM_GAUGES) == 34
    assert UPSTREAM - {n for n in UPSTREAM if n.endswith("_created")} <= registered


def _groups(path: Path) -> dict[str, list[dict]]:
    return {g["name"]: g["rules"] for g in yaml.safe_load(path.read_text())["groups"]}


@pytest.mark.parametrize("path", [RULES, INSTANCES_RULES], ids=lambda p: p.name)
def test_the_upstream_rule_groups_use_upstreams_families_only(path):
    groups = _groups(path)
    checked = 0
    for name, rules in groups.items():
        if name == OPT_IN_GROUP:
            continue
        for rule in rules:
            names = _names(rule["expr"])
            assert names <= UPSTREAM, f"{name} / {rule.get('record') or rule['alert']}: {names - UPSTREAM}"
            checked += 1
    assert checked >= 5


def test_every_rule_of_the_opt_in_group_needs_ours_and_its_section_names_the_setting():
    groups = _groups(RULES)
    assert list(groups)[-1] == OPT_IN_GROUP  # after the rules that work everywhere
    rules = groups[OPT_IN_GROUP]
    assert len(rules) + sum(len(r) for g, r in groups.items() if g != OPT_IN_GROUP) == 31
    # The comment lines above each rule of the group, back to the section's "# ---" heading.
    text = RULES.read_text()
    lines = text[text.index(f"- name: {OPT_IN_GROUP}") :].splitlines()
    sections, heading = [], ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("# ---"):
            heading = stripped
        elif stripped.startswith("#") and heading:
            heading += " " + stripped
        elif stripped.startswith("- record:"):
            sections.append(heading)
    for rule, section in zip(rules, sections, strict=True):
        needed = _settings(rule["expr"])
        assert needed, f"{rule['record']} uses upstream's families only: move it to django.recording"
        assert all(s in section for s in needed), f"{rule['record']}: {section!r} does not name {needed}"


def _panels_by_row(board: dict) -> list[tuple[str, dict]]:
    """(title of the row it sits under, panel) for each panel that queries."""
    out, row = [], ""
    for panel in board["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
            for inner in panel.get("panels", []):  # a collapsed row holds its panels
                out.append((row, inner))
        else:
            out.append((row, panel))
    return out


def _exprs(panel: dict) -> str:
    return "\n".join(t.get("expr", "") for t in panel.get("targets", []))


def test_the_dashboard_outside_its_opt_in_rows_uses_upstreams_families_only():
    board = json.loads(DASHBOARD.read_text())
    upstream_panels = [p for row, p in _panels_by_row(board) if not row.startswith(OPT_IN_ROW)]
    assert len(upstream_panels) >= 20
    for panel in upstream_panels:
        names = _names(_exprs(panel))
        assert names, panel["title"]
        assert names <= UPSTREAM, f"{panel['title']}: {names - UPSTREAM} (put it under an Opt-in row)"
    for var in board["templating"]["list"]:
        assert _names(json.dumps(var)) <= UPSTREAM, var["name"]


def test_each_opt_in_panel_needs_ours_and_says_which_setting():
    board = json.loads(DASHBOARD.read_text())
    opt_in = [(row, p) for row, p in _panels_by_row(board) if row.startswith(OPT_IN_ROW)]
    assert opt_in
    for row, panel in opt_in:
        needed = _settings(_exprs(panel))
        assert needed, f"{panel['title']} uses upstream's families only: move it above the Opt-in rows"
        description = panel.get("description", "")
        assert description.startswith(OPT_IN_PANEL), panel["title"]
        assert all(s in description for s in needed), f"{panel['title']}: {description!r} lacks {needed}"
        assert all(s in row or s == 'OPTIONS["pool"]' for s in needed), f"row {row!r} lacks {needed}"
    # The rows that work everywhere come first, so an upstream site sees its panels on top.
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    first = next(i for i, title in enumerate(rows) if title.startswith(OPT_IN_ROW))
    assert all(title.startswith(OPT_IN_ROW) for title in rows[first:]), rows


_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_a_dashboard_declares_no_input_it_does_not_use_and_uses_none_it_does_not_declare(path):
    board = json.loads(path.read_text())
    inputs = {i["name"] for i in board.get("__inputs", [])}
    variables = {v["name"] for v in board.get("templating", {}).get("list", [])}
    rest = json.dumps({k: v for k, v in board.items() if k != "__inputs"})
    used = {a or b for a, b in _REF.findall(rest)}
    used = {n for n in used if not n.startswith("__")}  # Grafana's own ($__rate_interval, ...)
    assert inputs <= used, f"unused __inputs: {inputs - used}"
    assert used <= inputs | variables, f"undeclared: {used - inputs - variables}"
    assert used, "no variable is used: the job selector and data source are gone?"

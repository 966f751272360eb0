"""One table of every ``PROMETHEUS_*`` setting (``conf.SETTINGS``), read everywhere, checked by ``check``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings as live_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.test import override_settings

from django_prometheus import checks, conf
from django_prometheus.utils import PowersOf

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "django_prometheus"
# Environment variables, not settings (docs/reference/settings.md, second table).
ENVIRONMENT = {"PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_DISABLE_CREATED_SERIES"}


def test_every_setting_the_code_names_is_a_row_of_the_table():
    named = set()
    for path in SRC.rglob("*.py"):
        named |= set(re.findall(r"\b(PROMETHEUS_[A-Z_]+)\b", path.read_text()))
    assert sorted(named - ENVIRONMENT - set(conf.SETTINGS)) == []
    assert sorted(set(conf.SETTINGS) - named) == []  # no row the code does not read


def test_settings_are_read_through_the_table_only():
    # getattr(settings, "PROMETHEUS_…") or settings.PROMETHEUS_… outside conf/ would bypass the rules.
    bypass = re.compile(r"""getattr\(\s*settings\s*,\s*["']PROMETHEUS_|settings\.PROMETHEUS_""")
    found = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.parent.name != "conf" and bypass.search(p.read_text())
    ]
    assert found == []


def test_the_settings_page_documents_each_row_with_its_default():
    section = (ROOT / "docs" / "reference" / "settings.md").read_text()
    rows = dict(re.findall(r"^\| `(PROMETHEUS_[A-Z_]+)` \| ([^|]+) \|", section, re.M))
    assert sorted(set(conf.SETTINGS) - set(rows)) == []
    for name, entry in conf.SETTINGS.items():
        shown = rows[name].strip()
        documented = (
            None if shown == "unset" else eval(shown.strip("`"), {"inf": float("inf"), "PowersOf": PowersOf})
        )  # noqa: S307
        default = list(entry.default) if isinstance(entry.default, tuple) else entry.default
        assert (list(documented) if isinstance(documented, tuple) else documented) == default, name


def test_the_defaults_pass_the_rules_and_the_suite_settings_are_clean():
    for name, entry in conf.SETTINGS.items():
        assert entry.rule(name, entry.default) == entry.default or entry.default is None, name
    assert checks.check_settings() == []


BAD = [
    ("PROMETHEUS_LATENCY_BUCKETS", "0.1,1", "E002", "an increasing sequence of numbers"),
    ("PROMETHEUS_LATENCY_BUCKETS", [1.0, 0.5], "E002", "is not increasing"),
    ("PROMETHEUS_LATENCY_BUCKETS", [0.5, 0.5, 1], "E002", "is not increasing"),
    ("PROMETHEUS_LATENCY_BUCKETS", [0.1, "fast"], "E002", "'fast' is not a number"),
    ("PROMETHEUS_LATENCY_BUCKETS", [0.1, True], "E002", "True is not a number"),
    ("PROMETHEUS_LATENCY_BUCKETS", [0.1, float("nan")], "E002", "nan is not a number"),
    ("PROMETHEUS_LATENCY_BUCKETS", [], "E002", "with a finite bound"),
    ("PROMETHEUS_LATENCY_BUCKETS", {0.1: 1}, "E002", "an increasing sequence of numbers"),
    ("PROMETHEUS_CACHE_OPERATION_BUCKETS", 0.5, "E002", "an increasing sequence of numbers"),
    ("PROMETHEUS_METRIC_NAMESPACE", 5, "E002", "must be a string"),
    ("PROMETHEUS_ROUTE_METRICS", "yes", "E002", "True or False"),
    ("PROMETHEUS_EXEMPLARS", 1, "E002", "True or False"),
    ("PROMETHEUS_CACHE_OPERATION_METRICS", "on", "E002", "True or False"),
    ("PROMETHEUS_EXCLUDE_PATHS", "^/metrics$", "E002", "a list of strings"),
    ("PROMETHEUS_EXCLUDE_PATHS", ["(unclosed"], "E002", "is not a regex"),
    ("PROMETHEUS_EXCLUDE_VIEWS", ["ok", ""], "E002", "non-empty strings"),
    ("PROMETHEUS_INSTRUMENT_DATABASES", "default", "E002", "a list of database aliases"),
    ("PROMETHEUS_INSTRUMENT_DATABASES", ["nope"], "E002", "not in DATABASES: nope"),
    ("PROMETHEUS_METRICS_EXPORT_PORT", "http", "E002", "a port number"),
    ("PROMETHEUS_METRICS_EXPORT_PORT", 70000, "E002", "a port number"),
    ("PROMETHEUS_METRICS_EXPORT_PORT_RANGE", "8001-8005", "E002", "a range or list of port numbers"),
    ("PROMETHEUS_METRICS_EXPORT_PORT_RANGE", [8001, "x"], "E002", "'x' is not one"),
    ("PROMETHEUS_METRICS_EXPORT_ADDRESS", None, "E002", "must be a string"),
    ("PROMETHEUS_METRICS_ALLOWED_IPS", ["10.0.0.0/33"], "E001", "10.0.0.0/33"),
    ("PROMETHEUS_METRICS_BEARER_TOKENS", [1234], "E001", "a list of strings"),
    ("PROMETHEUS_METRICS_BASIC_AUTH", [("user", "pw")], "E001", "must be a dict"),
]


@pytest.mark.parametrize(
    ("name", "value", "check_id", "says"), BAD, ids=[f"{b[0][11:]}={b[1]!r}" for b in BAD]
)
def test_a_bad_value_is_one_check_message_naming_the_setting_and_the_value(
    monkeypatch, name, value, check_id, says
):
    # as a settings module has it (override_settings would also re-install the features, and raise there)
    monkeypatch.setattr(live_settings, name, value, raising=False)
    messages = checks.check_settings()
    with pytest.raises(ImproperlyConfigured, match=re.escape(says)):
        conf.get(name)
    monkeypatch.undo()
    assert [(m.id, m.level) for m in messages] == [(f"django_prometheus.{check_id}", 40)]
    assert name in messages[0].msg and says in messages[0].msg
    assert repr(value) in messages[0].msg or repr(value)[:20] in messages[0].msg or says in messages[0].msg


def test_several_bad_settings_are_one_message_each(monkeypatch):
    bad = {name: value for name, value, _, _ in BAD[:1] + BAD[9:12]}
    for name, value in bad.items():
        monkeypatch.setattr(live_settings, name, value, raising=False)
    messages = checks.check_settings()
    monkeypatch.undo()
    assert sorted(next(n for n in bad if n in m.msg) for m in messages) == sorted(bad)


GOOD = [
    ("PROMETHEUS_LATENCY_BUCKETS", (0.1, 1, float("inf"))),
    ("PROMETHEUS_LATENCY_BUCKETS", ["0.1", "1"]),  # prometheus_client reads bounds with float(), as upstream
    ("PROMETHEUS_LATENCY_BUCKETS", [0.5]),
    ("PROMETHEUS_METRICS_EXPORT_PORT_RANGE", range(8001, 8050)),
    ("PROMETHEUS_METRICS_EXPORT_PORT", None),
    ("PROMETHEUS_METRICS_EXPORT_PORT", "8001"),  # from the environment: the exporter binds int(port)
    ("PROMETHEUS_METRICS_EXPORT_PORT_RANGE", ["8001", 8002]),
    ("PROMETHEUS_EXPORT_MIGRATIONS", 1),  # upstream reads it for its truth value
    ("PROMETHEUS_INSTRUMENT_DATABASES", ["default"]),
    ("PROMETHEUS_METRICS_ALLOWED_IPS", "127.0.0.1"),
]


@pytest.mark.parametrize(("name", "value"), GOOD, ids=[f"{g[0][11:]}={g[1]!r}" for g in GOOD])
def test_values_upstream_accepted_still_pass(name, value):
    with override_settings(**{name: value}):
        assert checks.check_settings() == []
        assert conf.get(name) == (tuple(value) if "BUCKETS" in name else value)


# --- manage.py check and the serving process, as a user runs them -----------------------------------

PROJECT_SETTINGS = """
SECRET_KEY = "x"
INSTALLED_APPS = ["django_prometheus"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
ROOT_URLCONF = "django_prometheus.urls"
PROMETHEUS_LATENCY_BUCKETS = "0.1,1"
PROMETHEUS_ROUTE_METRICS = "yes"
PROMETHEUS_INSTRUMENT_DATABASES = "default"
PROMETHEUS_METRICS_EXPORT_PORT = "http"
"""
BAD_IN_PROJECT = [
    "PROMETHEUS_LATENCY_BUCKETS",
    "PROMETHEUS_ROUTE_METRICS",
    "PROMETHEUS_INSTRUMENT_DATABASES",
    "PROMETHEUS_METRICS_EXPORT_PORT",
]


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "bad_settings.py").write_text(PROJECT_SETTINGS)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bad_settings", "PYTHONPATH": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def test_manage_py_check_reports_every_bad_setting_instead_of_a_traceback(tmp_path):
    out = _run(tmp_path, "-m", "django", "check")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if "django_prometheus.E002" in line]
    assert sorted(next(n for n in BAD_IN_PROJECT if n in line) for line in lines) == sorted(BAD_IN_PROJECT)
    [buckets] = [line for line in lines if "PROMETHEUS_LATENCY_BUCKETS" in line]
    assert "'0.1,1'" in buckets and "an increasing sequence of numbers" in buckets


def test_the_serving_process_refuses_to_start_with_the_same_messages(tmp_path):
    script = textwrap.dedent("""
        from django.core.wsgi import get_wsgi_application
        try:
            get_wsgi_application()
        except Exception as exc:
            print(type(exc).__name__, exc)
        else:
            print("served")
    """)
    out = _run(tmp_path, "-c", script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ImproperlyConfigured "), out.stdout + out.stderr
    check = _run(tmp_path, "-m", "django", "check")
    for line in (line for line in check.stderr.splitlines() if "django_prometheus.E002" in line):
        assert line.split("django_prometheus.E002) ", 1)[1] in out.stdout


# --- signals: connected by ready(), once --------------------------------------------------------------


def _ours(signal):
    return [
        key
        for key, *_ in signal.receivers
        if isinstance(key[0], str) and key[0].startswith("django_prometheus")
    ]


def test_ready_connects_the_settings_signals_once_however_often_it_runs():
    from django.apps import apps

    config = apps.get_app_config("django_prometheus")
    before = _ours(setting_changed)
    assert {"django_prometheus.http.settings", "django_prometheus.http.features"} <= {k[0] for k in before}
    config.ready()
    config.ready()
    assert _ours(setting_changed) == before


def test_importing_the_http_modules_connects_nothing(tmp_path):
    script = textwrap.dedent("""
        from django.conf import settings
        settings.configure()
        from django.core.signals import setting_changed
        import django_prometheus.http.cells, django_prometheus.http.features
        print([k[0] for k, *_ in setting_changed.receivers if str(k[0]).startswith("django_prometheus")])
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

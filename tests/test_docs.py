"""The docs say what the code does: the pages under docs/, README.md, CONTRIBUTING.md, CHANGELOG.md.

The metrics reference is generated from the code; every setting the code reads is on the settings
page with its default (tests/test_settings_table.py checks each default against ``conf.SETTINGS``);
every make target, script, test file and example the docs name exists; every Python snippet
compiles; and the quickstart, as printed, serves its families on /metrics. ``make docs`` (run by
``make test``) builds the pages strict: a broken link or reference fails there.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from prometheus_client.metrics import MetricWrapperBase

import django_prometheus
from tests.db_settings import PG

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
#: Every Markdown file a reader is sent to: the README, the contributing guide, the changelog, the pages.
TEXTS = {
    p.relative_to(ROOT).as_posix(): p.read_text()
    for p in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", *PAGES]
}
METRICS_PAGE = (DOCS / "reference" / "metrics.md").read_text()
SETTINGS_PAGE = (DOCS / "reference" / "settings.md").read_text()

sys.path.insert(0, str(ROOT / "scripts"))
import metrics_reference  # noqa: E402

sys.path.remove(str(ROOT / "scripts"))


def test_the_docs_have_a_page_per_concern():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {
        "index.md",
        "install.md",
        "http.md",
        "databases.md",
        "caches.md",
        "background.md",
        "exporters.md",
        "security.md",
        "native-histograms.md",
        "deploying.md",
        "performance.md",
        "free-threaded.md",
        "reference/settings.md",
        "reference/metrics.md",
        "reference/api.md",
        "contributing.md",
        "changelog.md",
    } <= names


# --- the metrics reference ---------------------------------------------------------------------------


def test_the_metrics_reference_is_what_the_code_generates():
    on_page = metrics_reference.current(METRICS_PAGE)
    assert on_page is not None, "docs/reference/metrics.md lacks the metrics reference markers"
    assert on_page == metrics_reference.render(), "run: python scripts/metrics_reference.py --write"


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
    block = metrics_reference.current(METRICS_PAGE)
    missing = [name for name in found if f"`{name}" not in block]
    assert not missing, f"metric families missing from docs/reference/metrics.md: {missing}"


# --- settings ----------------------------------------------------------------------------------------


def test_every_setting_the_code_reads_is_on_the_settings_page():
    read = set()
    for path in (ROOT / "src" / "django_prometheus").rglob("*.py"):
        read |= set(re.findall(r"\b(PROMETHEUS_[A-Z_]+)\b", path.read_text()))
    assert {
        "PROMETHEUS_LATENCY_BUCKETS",
        "PROMETHEUS_METRIC_NAMESPACE",
        "PROMETHEUS_EXPORT_MIGRATIONS",
    } <= read
    rows = set(re.findall(r"^\| `(PROMETHEUS_[A-Z_]+)`", SETTINGS_PAGE, re.M))
    undocumented = sorted(read - rows)
    assert not undocumented, (
        f"settings read by the code but not in docs/reference/settings.md: {undocumented}"
    )


def test_every_setting_the_pages_name_exists():
    from django_prometheus import conf

    environment = {"PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_DISABLE_CREATED_SERIES"}
    named = {
        (path, name)
        for path, text in TEXTS.items()
        if path != "CHANGELOG.md"  # may name what was renamed or removed
        for name in re.findall(r"\b(PROMETHEUS_[A-Z_]*[A-Z])\b", text)
    }
    unknown = sorted(
        (path, name) for path, name in named if name not in conf.SETTINGS and name not in environment
    )
    assert unknown == [], f"the docs name settings the package does not have: {unknown}"


# --- README ------------------------------------------------------------------------------------------


def test_readme_starts_with_the_two_commands():
    first_block = README[README.index("```sh") : README.index("```", README.index("```sh") + 5)]
    assert "make demo" in first_block and "make test" in first_block


def test_readme_is_short_and_its_first_screen_says_what_runs_it_and_how_to_roll_back():
    lines = README.splitlines()
    assert len(lines) <= 250, len(lines)
    first_screen = "\n".join(lines[:30])
    for version in ("3.10", "3.14", "Django 4.2", "5.2", "6.0", "6.1"):
        assert version in first_screen, version
    assert "pip install django-prometheus==2.5.0" in first_screen
    assert first_screen.index("pip uninstall -y django-prometheus-compiled") < first_screen.index(
        "pip install django-prometheus==2.5.0"
    )


def test_the_readme_links_into_every_page():
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", README))
    pages = {p.relative_to(ROOT).as_posix() for p in PAGES} - {"docs/contributing.md", "docs/changelog.md"}
    assert sorted(pages - linked) == []


def test_the_readme_figures_are_rows_of_the_performance_page():
    performance = (DOCS / "performance.md").read_text()
    why = README.split("\n## Why\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| [^|]*\(`(\w+)`\) \| ([\d,]+) \| ([\d,]+) \([\d.]+×\) \| ([\d,]+) ", why, re.M)
    assert len(rows) == 3
    for case, bare, compiled, upstream in rows:
        [row] = re.findall(rf"^\| `{case}` \|.*$", performance, re.M)
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert [cells[1], cells[2].split()[0], cells[4].split()[0]] == [bare, compiled, upstream], case


def _slug(heading: str) -> str:
    """GitHub's (and MyST's ``myst_heading_anchors``) anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_every_relative_link_outside_the_site_resolves():
    # The pages' own links are checked by the strict Sphinx build; these files are read on GitHub.
    broken = []
    for name in ("README.md", "CONTRIBUTING.md", "CHANGELOG.md"):
        for target in re.findall(r"\]\(([^)\s]+)\)", (ROOT / name).read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = ROOT / path if path else ROOT / name
            if not file.exists() or (anchor and anchor not in _anchors(file)):
                broken.append((name, target))
    assert broken == []


# --- what the docs name exists -----------------------------------------------------------------------


def test_every_make_target_the_docs_name_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = {
        (path, t)
        for path, text in TEXTS.items()
        for t in re.findall(r"(?:`|^)make ([a-z][\w-]*)", text, re.M)
    }
    assert {t for _, t in named} >= {"demo", "test", "docs", "dist", "bench"}
    assert sorted((path, t) for path, t in named if t not in targets) == []


# A path into the repository, as the docs write it in backticks (a command's first word, or alone).
_PATH = re.compile(
    r"`(?:\S+=\S+ )*(?:bash |python |\.venv/bin/python )?"
    r"((?:scripts|tests|examples|benchmarks|docs|_core|src|\.github|\.ci)/[\w./-]*[\w/])(?![\w./*<{-])"
)  # not a pattern: `tests/test_core_<module>.py`, `_core/_db_*`


def test_every_file_and_script_the_docs_name_exists():
    missing = []
    for path, text in TEXTS.items():
        if path == "CHANGELOG.md":
            continue
        for name in set(_PATH.findall(text)):
            if not (ROOT / name).exists():
                missing.append((path, name))
    assert sorted(missing) == []


def test_every_python_module_the_docs_run_exists():
    # `python -m X` of ours: benchmarks and its sub-modules are in the repository, not the package.
    named = {m for text in TEXTS.values() for m in re.findall(r"python -m ([\w.]+)", text)}
    ours = {m for m in named if m.split(".")[0] in {"benchmarks", "scripts", "tests"}}
    assert "benchmarks" in ours
    missing = [
        m
        for m in ours
        if not (ROOT / m.replace(".", "/")).with_suffix(".py").exists()
        and not (ROOT / m.replace(".", "/") / "__main__.py").exists()
    ]
    assert missing == []


def test_every_script_subcommand_the_docs_name_is_one_the_script_takes():
    named = {
        (s, sub) for text in TEXTS.values() for s, sub in re.findall(r"(scripts/\w+\.sh) ([a-z][\w-]*)", text)
    }
    assert ("scripts/services.sh", "start") in named
    unknown = []
    for script, sub in sorted(named):
        source = (ROOT / script).read_text()
        # a case label of the script's dispatch: `start)`, `test|bench)`, `"$1" == cached`...
        if not re.search(rf"(^|[\s|(\"']){re.escape(sub)}([)|\"']|\s*\))", source, re.M):
            unknown.append((script, sub))
    assert unknown == []


def test_every_benchmark_command_the_docs_give_selects_cases_and_takes_its_options():
    runs = [
        run
        for text in TEXTS.values()
        for run in re.findall(r"python -m benchmarks( [^`\n#]*)", text)
        if not run.startswith(".")
    ]
    assert len(runs) >= 10
    listing = subprocess.run(
        [
            sys.executable,
            "-c",
            "from benchmarks._harness import load_cases as l; print(*[c.name for c in l()])",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    cases = listing.stdout.split()
    runner = (ROOT / "benchmarks" / "_runner.py").read_text()
    options = set(re.findall(r'add_argument\(\s*"(--[\w-]+)"', runner))
    bad = []
    for run in runs:
        for option in re.findall(r"(?<!\S)(--[\w-]+)", run):
            if option not in options:
                bad.append((run, option))
        for pattern in re.findall(r"--case '([^']+)'", run):
            if not any(re.search(pattern, case) for case in cases):
                bad.append((run, pattern))
    assert bad == []


# --- snippets ----------------------------------------------------------------------------------------


def _snippets(lang: str) -> list[tuple[str, int, str]]:
    found = []
    for path, text in TEXTS.items():
        for match in re.finditer(rf"^```{lang}\n(.*?)^```", text, re.M | re.S):
            found.append((path, text.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


def test_every_python_snippet_compiles():
    snippets = _snippets("python")
    assert len(snippets) >= 10
    failed = []
    for path, line, code in snippets:
        try:
            compile(textwrap.dedent(code), f"{path}:{line}", "exec")
        except SyntaxError as exc:
            failed.append(f"{path}:{line + (exc.lineno or 0)}: {exc.msg}")
    assert failed == []


def _quickstart() -> str:
    page = (DOCS / "install.md").read_text()
    section = page.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    [code] = [c for c in re.findall(r"^```python\n(.*?)^```", section, re.M | re.S) if "# settings.py" in c]
    return code


def test_the_readme_quickstart_is_the_install_page_quickstart():
    assert f"```python\n{_quickstart()}```" in README


QUICKSTART_RUN = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "qs_settings"
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.test import Client
from qs_shop.models import Dog

call_command("migrate", run_syncdb=True, verbosity=0)
try:
    client = Client()
    assert client.get("/dogs/").status_code == 200
    body = client.get("/metrics").content.decode()
    print(body)
finally:
    with connection.schema_editor() as editor:
        editor.delete_model(Dog)
"""


@pytest.mark.services
def test_the_quickstart_as_printed_serves_its_families(tmp_path, require_service):
    """The quickstart's three parts, as printed, in a throwaway project on the real PostgreSQL and Redis.

    What the snippet leaves to the reader (its ``...``) is filled in: the connection details,
    a view that reads the cache and writes a model, and the ``app_label``.
    """
    require_service("postgresql")
    require_service("redis")
    code = _quickstart()
    # Three files, each opened by its comment line: "# settings.py", "# urls.py", "# models.py: ...".
    _, settings_part, urls_part, models_part = re.split(
        r"^# (?:settings|urls|models)\.py.*\n", code, flags=re.M
    )

    namespace: dict = {}
    exec(settings_part, namespace)  # noqa: S102 - the page's own code
    apps = [a for a in namespace["INSTALLED_APPS"] if a is not Ellipsis]
    middleware = [m for m in namespace["MIDDLEWARE"] if m is not Ellipsis]
    assert middleware[0].endswith("PrometheusBeforeMiddleware") and middleware[-1].endswith("AfterMiddleware")
    database = namespace["DATABASES"]["default"]
    cache = namespace["CACHES"]["default"]
    database.update({k: v for k, v in PG.items() if k in ("HOST", "PORT", "USER", "PASSWORD", "NAME")})
    cache.update(LOCATION=django_settings.REDIS_URL, KEY_PREFIX="quickstart")
    (tmp_path / "qs_settings.py").write_text(
        f"SECRET_KEY = 'quickstart'\nALLOWED_HOSTS = ['*']\nROOT_URLCONF = 'qs_urls'\n"
        f"DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'\n"
        f"INSTALLED_APPS = {apps + ['qs_shop']!r}\nMIDDLEWARE = {middleware!r}\n"
        f"DATABASES = {{'default': {database!r}}}\nCACHES = {{'default': {cache!r}}}\n"
    )
    (tmp_path / "qs_urls.py").write_text(
        "from django.urls import include, path\nfrom qs_shop.views import dogs\n"
        + urls_part.replace("[...,", "[path('dogs/', dogs),")
    )
    shop = tmp_path / "qs_shop"
    shop.mkdir()
    (shop / "__init__.py").write_text("")
    (shop / "models.py").write_text(
        "from django.db import models\n"
        + models_part.replace(
            "models.Model): ...", "models.Model):\n    class Meta:\n        app_label = 'qs_shop'"
        )
    )
    (shop / "views.py").write_text(
        "from django.core.cache import cache\nfrom django.http import HttpResponse\n"
        "from .models import Dog\n\n"
        "def dogs(request):\n    cache.get('dogs')\n    Dog.objects.create()\n"
        "    return HttpResponse(str(Dog.objects.count()))\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR")
    }
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", QUICKSTART_RUN],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    samples = out.stdout
    for line in (
        "django_http_requests_total_by_view_transport_method_total"
        '{method="GET",transport="http",view="qs_shop.views.dogs"} 1.0',
        'django_cache_get_total{backend="redis"} 1.0',
        'django_cache_get_misses_total{backend="redis"} 1.0',
        'django_model_inserts_total{model="dog"} 1.0',
    ):
        assert line in samples, line
    assert re.search(r'^django_db_execute_total\{alias="default",vendor="postgresql"\} [1-9]', samples, re.M)


# --- the changelog -----------------------------------------------------------------------------------


def test_the_changelog_keeps_a_changelog_and_starts_at_the_version_pyproject_carries():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    changelog = (ROOT / "CHANGELOG.md").read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    releases = re.findall(r"^## \[([^\]]+)\] - (\S+)", changelog, re.M)
    assert releases and releases[0][0] == version, (releases[:1], version)
    assert all(re.fullmatch(r"unreleased|\d{4}-\d\d-\d\d", date) for _, date in releases), releases
    allowed = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    assert set(re.findall(r"^### (.+)$", changelog, re.M)) <= allowed
    assert "keepachangelog.com" in changelog


def test_make_test_builds_the_docs_strict_with_the_tools_it_installs():
    makefile = (ROOT / "Makefile").read_text()
    [test] = re.findall(r"^test: (.*)$", makefile, re.M)
    assert "docs" in test.split()
    [recipe] = re.findall(r"^docs: .*\n((?:\t.*\n)+)", makefile, re.M)
    assert re.search(r"-m sphinx .*-W .*--keep-going .*-n ", recipe) and "-E" in recipe
    # the docs extra is installed with the test set, from pyproject's own list
    assert re.search(r'pip install .*"\.\[test,docs\]"', makefile)
    assert 'docs = ["sphinx' in (ROOT / "pyproject.toml").read_text()


def test_every_what_differs_citation_names_an_item_of_the_install_page():
    # Code and tests cite a deliberate fix as "docs/install.md, What differs, N": N must be an
    # item of that page's numbered list, and no citation may point at a place the list left.
    install = (DOCS / "install.md").read_text()
    section = install.split("**What differs", 1)[1].split("\n## ", 1)[0]
    items = {int(n) for n in re.findall(r"^(\d+)\. ", section, re.M)}
    assert items == set(range(1, len(items) + 1)) and len(items) >= 6, items
    stale_pattern = re.compile(r"(?:README|[Ii]nstall page), What differs|[\"#] *fix \d+\b")
    cited, stale = [], []
    for folder in ("src", "_core", "tests", "scripts", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".pyx", ".pxi", ".h", ".sh") or "__pycache__" in path.parts:
                continue
            text = path.read_text()
            where = path.relative_to(ROOT).as_posix()
            stale += [f"{where}: {m}" for m in stale_pattern.findall(text)]
            cited += [(where, int(n)) for n in re.findall(r"docs/install\.md, What differs, (\d+)", text)]
    assert stale == []
    assert cited and all(n in items for _, n in cited), [c for c in cited if c[1] not in items]

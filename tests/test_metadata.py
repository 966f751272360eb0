"""What PyPI shows before anyone installs: classifiers, project URLs, extras, the README's images.

Read from pyproject.toml (what a release builds) and from the installed distribution (the wheel
``make build`` built from that pyproject, which is what pip would put on a user's machine).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+; the main suite runs on 3.12")

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "django-prometheus-compiled"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
CLASSIFIERS = PROJECT["classifiers"]
EXTRAS = PROJECT["optional-dependencies"]
URLS = PROJECT["urls"]
MATRIX = (ROOT / "scripts" / "matrix.sh").read_text()
WHEELS = PYPROJECT["tool"]["cibuildwheel"]["build"].split()
# The extras a user picks; `test` and `docs` are ours, `all` is the others together.
USER_EXTRAS = set(EXTRAS) - {"test", "docs", "all"}


def _matrix(var: str) -> list[str]:
    """The versions scripts/matrix.sh runs by default (``X=${MATRIX_X:-3.10 3.11 ...}``)."""
    found = re.search(rf"^{var}=\$\{{MATRIX_{var}:-([^}}]+)\}}$", MATRIX, re.M)
    assert found, f"scripts/matrix.sh no longer sets {var} from MATRIX_{var}"
    return found.group(1).split()


def _classified(prefix: str) -> set[str]:
    return {c.removeprefix(prefix) for c in CLASSIFIERS if re.fullmatch(re.escape(prefix) + r"\d+\.\d+", c)}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in requirements}


def test_the_django_classifiers_are_the_django_lines_the_matrix_tests():
    djangos = _matrix("DJANGOS")
    assert "6.1" in djangos
    assert _classified("Framework :: Django :: ") == set(djangos)
    assert "Framework :: Django" in CLASSIFIERS


def test_the_python_classifiers_are_the_pythons_the_matrix_tests_or_the_wheels_are_built_for():
    pythons = _matrix("PYTHONS")
    # cp314-* -> 3.14: the wheels workflow runs the core's tests on each wheel it builds.
    built = {f"3.{tag[3:].rstrip('t-*')}" for tag in WHEELS if tag.startswith("cp3")}
    classified = _classified("Programming Language :: Python :: ")
    assert set(pythons) <= classified, f"tested but not classified: {set(pythons) - classified}"
    assert classified <= set(pythons) | built, f"classified, neither tested nor built: {classified}"
    minimum = PROJECT["requires-python"].removeprefix(">=")
    assert min(classified, key=lambda v: tuple(map(int, v.split(".")))) == minimum


def test_a_free_threading_classifier_exactly_when_a_free_threaded_wheel_is_built():
    free_threaded = [tag for tag in WHEELS if re.fullmatch(r"cp3\d+t-\*", tag)]
    assert free_threaded, "no free-threaded wheel is built: drop the Free Threading classifier"
    levels = [c for c in CLASSIFIERS if c.startswith("Programming Language :: Python :: Free Threading ::")]
    assert len(levels) == 1, levels


def test_every_classifier_is_one_pypi_accepts():
    # PyPI rejects an upload with a classifier it does not know.
    from trove_classifiers import classifiers as known

    assert not [c for c in CLASSIFIERS if c not in known]
    assert len(CLASSIFIERS) == len(set(CLASSIFIERS))


def test_typed_is_classified_and_py_typed_is_in_the_installed_wheel():
    assert "Typing :: Typed" in CLASSIFIERS
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["django_prometheus"]
    files = {str(f) for f in metadata.files(DISTRIBUTION)}
    assert "django_prometheus/py.typed" in files


def test_the_installed_distribution_carries_the_pyproject_metadata():
    # Stale only when pyproject.toml changed since the last `make build`.
    meta = metadata.metadata(DISTRIBUTION)
    assert meta.get_all("Classifier") == CLASSIFIERS
    assert meta.get_all("Project-URL") == [f"{name}, {url}" for name, url in URLS.items()]
    assert set(meta.get_all("Provides-Extra")) == set(EXTRAS)


def test_the_project_urls_name_the_docs_the_changelog_and_the_issues_of_the_repository():
    source = URLS["Source"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", source), source
    assert URLS["Documentation"] == f"{source}/tree/main/docs"
    assert URLS["Changelog"] == f"{source}/blob/main/CHANGELOG.md"
    assert URLS["Issues"] == f"{source}/issues"
    assert (ROOT / "docs" / "index.md").is_file()
    assert (ROOT / "CHANGELOG.md").is_file()


def test_all_is_every_extra_a_user_picks():
    (everything,) = EXTRAS["all"]
    named = re.fullmatch(rf"{DISTRIBUTION}\[([\w,]+)\]", everything)
    assert named, everything
    assert set(named.group(1).split(",")) == USER_EXTRAS
    assert "opentelemetry" in USER_EXTRAS


def test_memcached_installs_from_wheels_and_pylibmc_is_its_own_extra():
    # pylibmc has no binary wheel (pip compiles it against libmemcached): not in [memcached].
    assert _requirement_names(EXTRAS["memcached"]) == {"pymemcache"}
    assert _requirement_names(EXTRAS["pylibmc"]) == {"pylibmc"}


_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)|<img\b[^>]*\bsrc=\"([^\"]+)\"")


def test_the_readmes_images_are_absolute_urls_to_files_of_the_repository():
    # PyPI renders the README away from the repository: a relative image path shows nothing there.
    raw = URLS["Source"].replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/"
    images = [a or b for a, b in _IMAGE.findall((ROOT / "README.md").read_text())]
    for url in images:
        assert url.startswith(raw), f"README image {url!r} is not {raw}<path>"
        assert (ROOT / url.removeprefix(raw)).is_file(), url

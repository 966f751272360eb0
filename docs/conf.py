"""Sphinx configuration: Markdown pages (MyST), the Python API from docstrings (autodoc).

Built strict by ``make docs`` (``-W --keep-going -n``): a warning or a broken internal
reference fails the build, and ``make test`` runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import django
import tomllib
from django.conf import settings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

# autodoc imports the package: Django must be configured first (the defaults of every setting).
if not settings.configured:
    settings.configure(INSTALLED_APPS=["django_prometheus"], DATABASES={})
    django.setup()

project = "django-prometheus-compiled"
author = "The django-prometheus developers"
copyright = "The django-prometheus developers"  # noqa: A001
release = tomllib.loads((HERE.parent / "pyproject.toml").read_text())["project"]["version"]
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "settings_reference",
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
# GitHub-style anchors for headings down to ###, so `page.md#some-heading` links resolve.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

html_theme = "furo"
html_title = f"django-prometheus-compiled {release}"
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}

# -n checks every cross-reference. Types from Django, prometheus_client and the standard library
# would need intersphinx inventories, which a build without network cannot fetch: those (and the
# decorator's TypeVar) are named, not linked. A reference to anything of ours must resolve.
nitpick_ignore_regex = [
    ("py:class", r"(django|prometheus_client|collections\.abc|typing)\..*"),
    ("py:class", r"HttpRequest|HttpResponse"),
    ("py:class", r"django_prometheus\.decorators\.V"),
]

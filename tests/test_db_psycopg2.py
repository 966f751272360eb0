"""The PostgreSQL backend on psycopg2, in a subprocess where psycopg 3 cannot be imported.

Django picks psycopg 3 whenever it is importable, so psycopg2 needs its own
interpreter. Only temporary tables are used: nothing outlives the connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.db_settings import PG

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import json, sys
sys.modules["psycopg"] = None  # Django falls back to psycopg2
import django
import psycopg2.extensions
from django.conf import settings

pg = json.loads(sys.argv[1])
settings.configure(
    DATABASES={
        "default": {"ENGINE": "django_prometheus.db.backends.postgresql", **pg},
        "bare": {"ENGINE": "django.db.backends.postgresql", **pg},
    },
    INSTALLED_APPS=["django_prometheus"],
    USE_TZ=True,
)
django.setup()
from django.db import connections, transaction
from prometheus_client import REGISTRY

def value(name, **labels):
    return REGISTRY.get_sample_value(name, {"alias": "default", "vendor": "postgresql", **labels}) or 0.0

def counts():
    return {k: value(f"django_db_{k}_total") for k in ("execute", "execute_many", "new_connections")} | {
        "duration": value("django_db_query_duration_seconds_count"),
        "undefined_table": value("django_db_errors_total", type="UndefinedTable"),
    }

ours, bare = connections["default"], connections["bare"]
out = {"driver": ours.Database.__name__}
QUERY = (
    "SELECT 1 AS a, 'x' AS b, NULL AS c, 2.5::numeric AS d, now()::date = current_date AS e, "
    "ARRAY[1, 2] AS f"
)
results = {}
for name, conn in (("ours", ours), ("bare", bare)):
    with conn.cursor() as c:
        c.execute("CREATE TEMP TABLE t (v text)")
        c.executemany("INSERT INTO t VALUES (%s)", [("a",), ("b",)])
        c.executemany("INSERT INTO t VALUES (%s)", ((v,) for v in "cde"))
        c.execute("SELECT v FROM t ORDER BY v")
        rows = c.fetchall()
        c.execute(QUERY)
        results[name] = [rows, [d[0] for d in c.description], c.fetchall()]
before = counts()
with ours.cursor() as c:
    c.execute("SELECT 1")
    c.executemany("INSERT INTO t VALUES (%s)", ((v,) for v in "fg"))
    try:
        with transaction.atomic():
            with ours.cursor() as failing:
                failing.execute("SELECT * FROM no_such_table_here")
    except Exception as exc:
        out["error"] = type(exc.__cause__).__name__
after_plain = counts()
with transaction.atomic():
    named = ours.chunked_cursor()
    out["named_class_exporting"] = bool(getattr(type(named), "_prometheus_exporting", False))
    mid = counts()
    named.execute("SELECT v FROM t ORDER BY v")
    out["named_rows"] = [r[0] for r in named.fetchall()]
    after_named = counts()
    named.close()
out["delta_plain"] = {k: after_plain[k] - before[k] for k in before}
out["delta_named"] = {k: after_named[k] - mid[k] for k in mid}
out["same_results"] = results["ours"] == results["bare"]
out["cursor_class"] = type(ours.connection.cursor()).__qualname__
out["factory_is_djangos"] = ours.connection.cursor_factory is psycopg2.extensions.cursor
import psycopg2.extras
custom = {**connections["default"].settings_dict}
custom["OPTIONS"] = {"cursor_factory": psycopg2.extras.DictCursor}
wrapper = type(ours)(custom, "custom")
wrapper.ensure_connection()
out["custom_factory_kept"] = wrapper.connection.cursor_factory is psycopg2.extras.DictCursor
with wrapper.cursor() as c:
    c.execute("SELECT 1 AS one")
    out["custom_row"] = dict(c.fetchone())
    out["custom_cursor_class"] = type(c.cursor).__name__
out["custom_counted"] = REGISTRY.get_sample_value(
    "django_db_execute_total", {"alias": "custom", "vendor": "postgresql"}
)
wrapper.close()
print(json.dumps(out, default=str))
"""


def test_psycopg2_backend_counts_and_returns_what_django_returns(require_service: Any) -> None:
    require_service("postgresql")
    pytest.importorskip("psycopg2")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(PG)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["driver"] == "psycopg2"
    # Issue 9.7: the driver's cursor_factory is Django's (or the user's), by identity.
    assert out["cursor_class"] == "cursor"
    assert out["factory_is_djangos"] is True
    assert out["custom_factory_kept"] is True
    assert out["custom_cursor_class"] == "DictCursor"
    assert out["custom_row"] == {"one": 1}
    assert out["custom_counted"] == 1
    assert out["same_results"] is True
    assert out["error"] == "UndefinedTable"
    # SELECT 1, a 2-set generator executemany, the failing SELECT (atomic() in autocommit
    # mode begins and rolls back through the driver, not through execute()).
    assert out["delta_plain"] == {
        "execute": 4, "execute_many": 2, "new_connections": 0, "duration": 3, "undefined_table": 1
    }  # fmt: skip
    assert out["named_class_exporting"] is True
    assert out["named_rows"] == list("abcdefg")
    assert out["delta_named"]["execute"] == 1 and out["delta_named"]["duration"] == 1

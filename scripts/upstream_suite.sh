#!/usr/bin/env bash
# Run django-prometheus 2.5.0's own test suite (unit and end2end) against OUR installed package.
#
# Usage: scripts/upstream_suite.sh <upstream checkout at v2.5.0> [python [pytest args...]]
#   python: .venv/bin/python by default; its SpatiaLite end2end tests need a Python that can load
#   SQLite extensions (pyenv's cannot): .venv-spatialite/bin/python (make test-spatialite).
# Exit status 0 when nothing fails but the seven listed below.
# Fetches nothing: give it a checkout of github.com/django-commons/django-prometheus at tag v2.5.0.
# Upstream's code is copied into $UPSTREAM_SUITE_DIR (build/upstream-suite), never into the repo.
# Its tests are copied out of its `django_prometheus` package (as `upstream_unit`), so that
# `import django_prometheus` is ours, installed in the venv; its end2end settings are used
# as they are, with only the servers' addresses and credentials pointed at scripts/services.sh's
# (source `scripts/services.sh env` first; `make services` starts them).
# Seven tests pin upstream's own mechanisms or bugs and are expected to fail (docs/install.md,
# "Migrating from django-prometheus"); the run's summary line says how many failed.
set -euo pipefail
cd "$(dirname "$0")/.."
UP=${1:?usage: scripts/upstream_suite.sh <upstream checkout at v2.5.0> [python]}
UP=$(cd "$UP" && pwd)
PY=${2:-$PWD/.venv/bin/python}
EXTRA=("${@:3}")  # more pytest arguments, for both phases
WORK=${UPSTREAM_SUITE_DIR:-build/upstream-suite}
[[ -f $UP/django_prometheus/tests/test_exports.py ]] || { echo "not an upstream checkout: $UP" >&2; exit 2; }
if (cd "$UP" && git describe --tags --exact-match 2>/dev/null | grep -qx v2.5.0); then :; else
  echo "upstream_suite: warning: $UP is not at tag v2.5.0" >&2; fi

rm -rf "$WORK" && mkdir -p "$WORK/unit/upstream_unit"
WORK=$(cd "$WORK" && pwd)
cp "$UP"/django_prometheus/tests/*.py "$WORK/unit/upstream_unit/"
cp -r "$UP/django_prometheus/tests/end2end" "$WORK/end2end"
printf '[pytest]\n' >"$WORK/unit/pytest.ini"
printf '[pytest]\nDJANGO_SETTINGS_MODULE = dp_upstream_settings\n' >"$WORK/end2end/pytest.ini"
cat >"$WORK/end2end/dp_upstream_settings.py" <<'PY'
"""Upstream's end2end settings, with the servers of scripts/services.sh (addresses and credentials only)."""
import os

from testapp.settings import *  # noqa: F403

env = os.environ
for db in DATABASES.values():  # noqa: F405
    if "postg" in db["ENGINE"]:
        db.update(HOST=env["DP_PG_HOST"], PORT=env["DP_PG_PORT"], USER=env["DP_PG_USER"], PASSWORD=env["DP_PG_PASSWORD"])
    elif "mysql" in db["ENGINE"]:
        db.update(HOST=env["DP_MYSQL_HOST"], PORT=env["DP_MYSQL_PORT"], USER=env["DP_MYSQL_USER"],
                  PASSWORD=env["DP_MYSQL_PASSWORD"])
for cache in CACHES.values():  # noqa: F405
    location = cache.get("LOCATION", "")
    if location == "localhost:11211":
        cache["LOCATION"] = env["DP_MEMCACHED_LOCATION"]
    elif location.startswith("redis://127.0.0.1:6379/"):
        cache["LOCATION"] = env["DP_REDIS_URL"] + location[len("redis://127.0.0.1:6379"):]
PY
: "${DP_PG_HOST:?source scripts/services.sh env first}"

echo "== upstream unit tests ($("$PY" -c 'import django_prometheus as d; print(d.__file__)'))"
set +e
(cd "$WORK/unit" && "$PY" -m pytest -p no:cacheprovider -q -rfEs --junitxml="$WORK/unit.xml" upstream_unit \
  "${EXTRA[@]+"${EXTRA[@]}"}")
echo "== upstream end2end tests"
(cd "$WORK/end2end" && PYTHONPATH="$WORK/end2end" "$PY" -m pytest -p no:cacheprovider -q -rfEs \
  --junitxml="$WORK/end2end.xml" testapp "${EXTRA[@]+"${EXTRA[@]}"}")
set -e

# The seven that pin upstream's mechanisms or bugs (docs/install.md, "Migrating from django-prometheus").
"$PY" - "$WORK/unit.xml" "$WORK/end2end.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET

EXPECTED = {
    "TestMiddlewareMetrics::test_exception_latency_histograms": "docs/install.md, What differs, 5: a raising view is observed once",
    "TestExportingCursorWrapper::test_double_wrapping_increases_mro": "no second wrapping layer",
    "TestPostgresqlGetConnectionParams::test_wraps_cursor_factory": "no cursor_factory replacement",
    "TestPostgresqlGetConnectionParams::test_get_new_connection_does_not_rewrap": "no cursor_factory replacement",
    "TestPostgresqlGetConnectionParams::test_create_cursor_delegates_to_django": "no cursor_factory replacement",
    "test_exports::test_port_range_available": "no prometheus_client HTTPServer in exports",
    "test_exports::test_port_range_unavailable": "no prometheus_client HTTPServer in exports",
}
counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
expected_seen, unexpected = [], []
for path in sys.argv[1:]:
    for case in ET.parse(path).iter("testcase"):
        test_id = case.get("classname", "").rsplit(".", 1)[-1] + "::" + case.get("name", "")
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        outcome = {"failure": "failed"}.get(outcome, outcome)
        counts[outcome] += 1
        if outcome in ("failed", "error"):
            (expected_seen if test_id in EXPECTED else unexpected).append(f"{test_id} ({outcome})")
missing = sorted(set(EXPECTED) - {t.split(" (")[0] for t in expected_seen})
print(
    f"upstream_suite: {counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
    f"{counts['skipped']} skipped; {len(expected_seen)} of the 7 expected failures, {len(unexpected)} unexpected"
)
for test_id in expected_seen:
    print(f"  expected: {test_id}: {EXPECTED[test_id.split(' (')[0]]}")
for test_id in unexpected:
    print(f"  UNEXPECTED: {test_id}")
for test_id in missing:
    print(f"  passed although expected to fail (update the list): {test_id}")
sys.exit(1 if unexpected else 0)
PY

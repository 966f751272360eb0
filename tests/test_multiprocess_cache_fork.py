"""A cache get in a forked child, multiprocess mode: the child's cells attach to its own file
on their first count (the lazy re-point after a fork) through every cache fast path."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = r"""
import os
import django
from django.conf import settings

locmem = "django_prometheus.cache.backends.locmem.LocMemCache"
settings.configure(
    INSTALLED_APPS=["django_prometheus"],
    CACHES={"default": {"BACKEND": locmem, "LOCATION": "a"}, "ops": {"BACKEND": locmem, "LOCATION": "b"}},
    PROMETHEUS_CACHE_OPERATION_METRICS=True,
)
django.setup()
from django.core.cache import caches
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

c, o = caches["default"], caches["ops"]
c.set("k", 1)
c.get("k")
o.get("k")
pid = os.fork()
if pid == 0:  # cells created before the fork: the child counts through them
    c.get("k"); c.get("absent"); o.get("k"); o.set("x", 1); c.get_many(["k", "absent"])
    os._exit(0)
assert os.waitpid(pid, 0)[1] == 0, "the child died"
r = CollectorRegistry()
MultiProcessCollector(r, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
v = lambda name, **labels: r.get_sample_value(name, labels)
print(v("django_cache_get_total", backend="locmem"), v("django_cache_get_hits_total", backend="locmem"),
      v("django_cache_get_misses_total", backend="locmem"),
      v("django_cache_operations_total", alias="default", backend="locmem", operation="get", result="hit"),
      v("django_cache_operations_total", alias="ops", backend="locmem", operation="get", result="miss"),
      v("django_cache_operations_total", alias="ops", backend="locmem", operation="set", result="ok"))
"""


def test_a_forked_child_counts_cache_gets_into_its_own_file(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # gets: 2 before the fork, 3 + 2 (get_many: one per distinct key) in the child
    assert out.stdout.split() == ["7.0", "3.0", "4.0", "2.0", "2.0", "1.0"], out.stdout
    assert any(name.startswith("counter_") and str(os.getpid()) not in name for name in os.listdir(tmp_path))

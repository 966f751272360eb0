"""gunicorn, sync workers, multiprocess mode.

    rm -rf /run/metrics && mkdir -p /run/metrics
    PROMETHEUS_MULTIPROC_DIR=/run/metrics gunicorn -c gunicorn_sync.conf.py mysite.wsgi

PROMETHEUS_MULTIPROC_DIR must be set (to an empty directory) before gunicorn starts, so
every worker inherits it; /metrics then serves the aggregate of all workers.
"""

import os

from django_prometheus.multiprocess import mark_process_dead

bind = os.environ.get("BIND", "127.0.0.1:8000")
worker_class = "sync"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Recycled workers: their counts stay in the aggregate (compacted by the hook below).
max_requests = 1000
max_requests_jitter = 100


def child_exit(server, worker):
    # Fold the dead worker's files into the archive: scrapes stay as cheap as the live workers'.
    mark_process_dead(worker.pid)

"""gunicorn, threaded workers (gthread), multiprocess mode.

    rm -rf /run/metrics && mkdir -p /run/metrics
    PROMETHEUS_MULTIPROC_DIR=/run/metrics gunicorn -c gunicorn_gthread.conf.py mysite.wsgi

Threads of one worker share its metric files; workers are aggregated by /metrics.
"""

import os

from django_prometheus.multiprocess import mark_process_dead

bind = os.environ.get("BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = 4
max_requests = 1000
max_requests_jitter = 100


def child_exit(server, worker):
    mark_process_dead(worker.pid)

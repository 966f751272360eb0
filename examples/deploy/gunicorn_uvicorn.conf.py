"""gunicorn managing uvicorn workers (ASGI), multiprocess mode.

    pip install uvicorn-worker   # (older uvicorn: uvicorn.workers.UvicornWorker)
    rm -rf /run/metrics && mkdir -p /run/metrics
    PROMETHEUS_MULTIPROC_DIR=/run/metrics gunicorn -c gunicorn_uvicorn.conf.py mysite.asgi:application

The ASGI application, gunicorn's process management (restarts, the child_exit hook).
"""

import importlib.util
import os

from django_prometheus.multiprocess import mark_process_dead

bind = os.environ.get("BIND", "127.0.0.1:8000")
# uvicorn's own gunicorn worker moved to the `uvicorn-worker` package.
if importlib.util.find_spec("uvicorn_worker") is not None:
    worker_class = "uvicorn_worker.UvicornWorker"
else:
    worker_class = "uvicorn.workers.UvicornWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
max_requests = 1000
max_requests_jitter = 100


def child_exit(server, worker):
    mark_process_dead(worker.pid)

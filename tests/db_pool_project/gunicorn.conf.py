"""gunicorn settings for multiprocess mode, as docs/exporters.md gives them: a dead worker's files go."""

from django_prometheus.multiprocess import mark_process_dead


def child_exit(server, worker):
    mark_process_dead(worker.pid)

"""gunicorn settings for multiprocess mode, as in docs/exporters.md: dead workers' files are compacted."""

from django_prometheus.multiprocess import mark_process_dead


def child_exit(server, worker):
    mark_process_dead(worker.pid)

"""gunicorn settings for multiprocess mode, as the README gives them: dead workers' files are compacted."""

from django_prometheus.multiprocess import mark_process_dead


def child_exit(server, worker):
    mark_process_dead(worker.pid)

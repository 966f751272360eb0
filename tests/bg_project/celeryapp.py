"""The Celery app of the background tests: broker from DP_BG_BROKER_URL, Django settings as usual."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.bg_project.settings")

app = Celery("bg_project", broker=os.environ.get("DP_BG_BROKER_URL", "memory://"))
app.conf.update(
    task_default_queue="celery",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_acks_late=False,
)
app.autodiscover_tasks(["tests.bg_project"], related_name="celery_tasks")

"""Background work in real processes: a db_worker, a Celery worker, management commands.

Paths and switches come from the environment the test sets (DP_BG_*).
"""

import os

SECRET_KEY = "tests-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROOT_URLCONF = "tests.urls"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_prometheus",
    "tests.bg_project",
]
if os.environ.get("DP_BG_TASKS_DB"):
    INSTALLED_APPS.append("django_tasks_db")

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("DP_BG_DB", ":memory:")},
}

if os.environ.get("DP_BG_TASKS_DB"):
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "slow"]}}

PROMETHEUS_TASK_METRICS = os.environ.get("DP_BG_TASK_METRICS") == "1"
PROMETHEUS_CELERY_METRICS = os.environ.get("DP_BG_CELERY_METRICS") == "1"
PROMETHEUS_COMMAND_METRICS = os.environ.get("DP_BG_COMMAND_METRICS") == "1"
PROMETHEUS_PUSHGATEWAY_URL = os.environ.get("DP_BG_PUSHGATEWAY_URL") or None
PROMETHEUS_TEXTFILE_DIR = os.environ.get("DP_BG_TEXTFILE_DIR") or None
if os.environ.get("DP_BG_EXPORT_PORT"):
    PROMETHEUS_METRICS_EXPORT_PORT = int(os.environ["DP_BG_EXPORT_PORT"])
    PROMETHEUS_METRICS_EXPORT_ADDRESS = "127.0.0.1"

CELERY_BROKER_URL = os.environ.get("DP_BG_BROKER_URL", "memory://")
CELERY_RESULT_BACKEND = os.environ.get("DP_BG_RESULT_BACKEND") or None

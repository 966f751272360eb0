"""Settings for the test suite: real services on 127.0.0.1 (see scripts/services.sh)."""

import os
import tempfile

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_prometheus",
    "tests.testapp",
]

MIDDLEWARE: list[str] = []

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
# Ours and Django's own backend per vendor, for tests/test_db*.py (only created when a test asks).
from tests.db_settings import DB_ALIASES  # noqa: E402

DATABASES.update(DB_ALIASES)

REDIS_URL = os.environ.get("DP_REDIS_URL", "redis://127.0.0.1:16379")
MEMCACHED_LOCATION = os.environ.get("DP_MEMCACHED_LOCATION", "127.0.0.1:21211")
# Nothing listens here: the failure paths of the network backends.
DEAD_REDIS_URL = "redis://127.0.0.1:1"
DEAD_MEMCACHED_LOCATION = "127.0.0.1:1"
_FILE_CACHE_DIR = tempfile.mkdtemp(prefix="dp-filecache-")

# For each backend: ours under its name, Django's own (uninstrumented) as "<name>_bare",
# and for network backends a "<name>_dead" one pointing at a closed port.
_BACKENDS = {
    "locmem": ("django.core.cache.backends.locmem.LocMemCache", "locmem.LocMemCache", None, None),
    "filebased": (
        "django.core.cache.backends.filebased.FileBasedCache",
        "filebased.FileBasedCache",
        _FILE_CACHE_DIR,
        None,
    ),
    "pymemcache": (
        "django.core.cache.backends.memcached.PyMemcacheCache",
        "memcached.PyMemcacheCache",
        MEMCACHED_LOCATION,
        DEAD_MEMCACHED_LOCATION,
    ),
    "pylibmc": (
        "django.core.cache.backends.memcached.PyLibMCCache",
        "memcached.PyLibMCCache",
        MEMCACHED_LOCATION,
        DEAD_MEMCACHED_LOCATION,
    ),
    "native_redis": (
        "django.core.cache.backends.redis.RedisCache",
        "redis.NativeRedisCache",
        REDIS_URL,
        DEAD_REDIS_URL,
    ),
    "redis": ("django_redis.cache.RedisCache", "redis.RedisCache", REDIS_URL, DEAD_REDIS_URL),
}

_OPTIONS = {
    # Fail fast against the closed port instead of retrying.
    "pymemcache": {"connect_timeout": 1, "timeout": 1},
    "redis": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
}

CACHES = {
    "default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache", "LOCATION": "default"}
}
for _name, (_bare, _ours, _location, _dead) in _BACKENDS.items():
    _common = {"LOCATION": _location or _name, "OPTIONS": _OPTIONS.get(_name, {}), "KEY_PREFIX": _name}
    CACHES[_name] = {"BACKEND": f"django_prometheus.cache.backends.{_ours}", **_common}
    CACHES[f"{_name}_bare"] = {"BACKEND": _bare, **_common, "KEY_PREFIX": f"{_name}_bare"}
    if _dead:
        CACHES[f"{_name}_dead"] = {"BACKEND": f"django_prometheus.cache.backends.{_ours}", **_common,
                                   "LOCATION": _dead}  # fmt: skip
        CACHES[f"{_name}_dead_bare"] = {"BACKEND": _bare, **_common, "LOCATION": _dead}
CACHES["redis_dead_ignored"] = {
    **CACHES["redis_dead"],
    "OPTIONS": {**_OPTIONS["redis"], "IGNORE_EXCEPTIONS": True},
}
CACHES["redis_dead_ignored_bare"] = {
    **CACHES["redis_dead_bare"],
    "OPTIONS": CACHES["redis_dead_ignored"]["OPTIONS"],
}

# django.tasks (Django 6.0+; ignored before): tests/bg_project/tasks.py uses both queues.
TASKS = {
    "default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend", "QUEUES": ["default", "slow"]}
}

"""Database aliases for tests/test_db*.py: each vendor through our backend and through Django's own.

Merged into ``tests.settings.DATABASES``. Every alias has its own test
database name (``test_dp_db_*``), so they never clobber each other or the
databases of other test modules. Servers: scripts/services.sh.
"""

import os
import sqlite3

#: SpatiaLite is a loadable SQLite extension: Pythons built without
#: --enable-loadable-sqlite-extensions (pyenv's default) cannot use it at all.
CAN_LOAD_SQLITE_EXTENSIONS = hasattr(sqlite3.Connection, "enable_load_extension")

PG = {
    "HOST": os.environ.get("DP_PG_HOST", "127.0.0.1"),
    "PORT": os.environ.get("DP_PG_PORT", "15432"),
    "USER": os.environ.get("DP_PG_USER", "dp"),
    "PASSWORD": os.environ.get("DP_PG_PASSWORD", "dp"),
    "NAME": os.environ.get("DP_PG_NAME", "dp"),
}
MYSQL = {
    "HOST": os.environ.get("DP_MYSQL_HOST", "127.0.0.1"),
    "PORT": os.environ.get("DP_MYSQL_PORT", "13306"),
    "USER": os.environ.get("DP_MYSQL_USER", "dp"),
    "PASSWORD": os.environ.get("DP_MYSQL_PASSWORD", "dp"),
    "NAME": os.environ.get("DP_MYSQL_NAME", "dp"),
    "OPTIONS": {"charset": "utf8mb4"},
}

OURS = "django_prometheus.db.backends."

DB_ALIASES = {
    "sqlite": {"ENGINE": OURS + "sqlite3", "NAME": ":memory:"},
    "sqlite_bare": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    "postgresql": {
        "ENGINE": OURS + "postgresql",
        **PG,
        "TEST": {"DEPENDENCIES": [], "NAME": "test_dp_db_pg"},
    },
    "postgresql_bare": {
        "ENGINE": "django.db.backends.postgresql",
        **PG,
        "TEST": {"DEPENDENCIES": [], "NAME": "test_dp_db_pg_bare"},
    },
    "postgresql_pool": {
        "ENGINE": OURS + "postgresql",
        **PG,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 2}},
        "TEST": {"DEPENDENCIES": [], "NAME": "test_dp_db_pg_pool"},
    },
    "postgresql_pool_bare": {
        "ENGINE": "django.db.backends.postgresql",
        **PG,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 2}},
        "TEST": {"DEPENDENCIES": [], "NAME": "test_dp_db_pg_pool_bare"},
    },
    "postgis": {"ENGINE": OURS + "postgis", **PG, "TEST": {"DEPENDENCIES": [], "NAME": "test_dp_db_postgis"}},
    "mysql": {"ENGINE": OURS + "mysql", **MYSQL, "TEST": {"DEPENDENCIES": [], "NAME": "test_dp_db_mysql"}},
    "mysql_bare": {
        "ENGINE": "django.db.backends.mysql",
        **MYSQL,
        "TEST": {"DEPENDENCIES": [], "NAME": "test_dp_db_mysql_bare"},
    },
}
if CAN_LOAD_SQLITE_EXTENSIONS:
    DB_ALIASES["spatialite"] = {"ENGINE": OURS + "spatialite", "NAME": ":memory:"}
for _db in DB_ALIASES.values():
    # Created on their own, not after "default" (which a test may not ask for).
    _db.setdefault("TEST", {}).setdefault("DEPENDENCIES", [])

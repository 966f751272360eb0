"""Database metrics, labelled by connection alias and vendor."""

from prometheus_client import REGISTRY

from django_prometheus.conf import NAMESPACE, PROMETHEUS_LATENCY_BUCKETS
from django_prometheus.db import pool
from django_prometheus.metrics import MULTIPROCESS_DIR, Counter, Histogram

__all__ = [
    "connection_errors_total",
    "connections_total",
    "errors_total",
    "execute_many_total",
    "execute_total",
    "query_duration_seconds",
    "transaction_duration_seconds",
    "transactions_total",
]

connections_total = Counter(
    "django_db_new_connections",
    "Counter of created connections by database and by vendor.",
    ["alias", "vendor"],
    namespace=NAMESPACE,
)
connection_errors_total = Counter(
    "django_db_new_connection_errors",
    "Counter of connection failures by database and by vendor.",
    ["alias", "vendor"],
    namespace=NAMESPACE,
)
execute_total = Counter(
    "django_db_execute",
    "Counter of executed statements by database and by vendor, including bulk executions.",
    ["alias", "vendor"],
    namespace=NAMESPACE,
)
execute_many_total = Counter(
    "django_db_execute_many",
    "Counter of executed statements in bulk operations by database and by vendor.",
    ["alias", "vendor"],
    namespace=NAMESPACE,
)
errors_total = Counter(
    "django_db_errors",
    "Counter of execution errors by database, vendor and exception type.",
    ["alias", "vendor", "type"],
    namespace=NAMESPACE,
)
query_duration_seconds = Histogram(
    "django_db_query_duration_seconds",
    "Histogram of query duration by database and vendor.",
    ["alias", "vendor"],
    buckets=PROMETHEUS_LATENCY_BUCKETS,
    namespace=NAMESPACE,
)

# Beyond upstream: transactions, as Django ends them (outermost atomic() blocks and
# manual commits/rollbacks), on the ENGINE path.
transactions_total = Counter(
    "django_db_transactions",
    "Counter of transactions ended by database, vendor and outcome (commit or rollback).",
    ["alias", "vendor", "outcome"],
    namespace=NAMESPACE,
)
transaction_duration_seconds = Histogram(
    "django_db_transaction_duration_seconds",
    "Histogram of transaction duration (begin to commit or rollback) by database and vendor.",
    ["alias", "vendor"],
    buckets=PROMETHEUS_LATENCY_BUCKETS,
    namespace=NAMESPACE,
)

# Connection pools: read from the pools themselves at scrape time (absent while no pool
# exists); in multiprocess mode each worker writes its own pool's statistics to files.
if MULTIPROCESS_DIR is None:
    _pool_collector = pool.PoolCollector(NAMESPACE)
    pool.install(collector=_pool_collector)
    REGISTRY.register(_pool_collector)
else:
    pool.install(publisher=pool.PoolPublisher(NAMESPACE))

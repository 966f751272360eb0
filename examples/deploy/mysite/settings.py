"""A minimal site for the deployment examples: django_prometheus' middleware, no database.

Every server config in examples/deploy/ runs this site. In production you keep your own
settings; the lines that matter for monitoring are INSTALLED_APPS, MIDDLEWARE, the
`/metrics` route (mysite/urls.py) and, outside of Django, PROMETHEUS_MULTIPROC_DIR in the
server's environment (see the configs).
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "deploy-example-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django_prometheus"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
DATABASES = {}

# Prometheus' own scrapes are not traffic.
PROMETHEUS_EXCLUDE_PATHS = [r"^/metrics$"]

# Behind a load balancer, /metrics is reachable by whoever reaches the app: protect it.
# The Kubernetes example (examples/kubernetes/) mounts the token from a Secret into this variable.
if os.environ.get("METRICS_BEARER_TOKEN"):
    PROMETHEUS_METRICS_BEARER_TOKENS = [os.environ["METRICS_BEARER_TOKEN"]]

"""The former name of ``django_prometheus.http.features``, kept importable: the same module object."""

import sys

from django_prometheus.http import features

sys.modules[__name__] = features

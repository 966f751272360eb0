"""The demo's settings with native histograms on (tests/test_e2e_native.py serves it with gunicorn)."""

from demo.settings import *  # noqa: F403

PROMETHEUS_NATIVE_HISTOGRAMS = True

#!/usr/bin/env python
"""The demo's manage.py: `python manage.py demo` migrates, prints where to look and serves."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:  # a DEMO_* choice that cannot run here: say what to do
        sys.exit(f"demo: {exc}")

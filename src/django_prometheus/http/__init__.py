"""The HTTP layer, shaped like ``cache/`` and ``db/``: Python resolves the cells, the core counts.

- ``http.metrics``: the 19 metric specs (upstream's names and labels) and ``Metrics``;
- ``http.cells``: ``HttpCells``, what the core's recorders receive;
- ``_core/_http_c.pyx`` / ``_http_py.py``: the label rules, the recorders, the middlewares' call;
- ``django_prometheus.middleware``: the two middlewares and upstream's extension path.
"""

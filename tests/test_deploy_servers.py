"""Each deployment example config (examples/deploy) started for real, sent known traffic, scraped.

gunicorn sync, gunicorn gthread, uWSGI (WSGI) and uvicorn, gunicorn with uvicorn workers
(ASGI), each with two worker processes in multiprocess mode: /metrics, served by whichever
worker takes the scrape, must count every request of every worker, exactly.
"""

from __future__ import annotations

import pytest

from tests.deploy_servers import COMMANDS, get, run_example, send
from tests.servers import parse_samples, sample_value

BY_VIEW = "django_http_requests_total_by_view_transport_method_total"
RESPONSES = "django_http_responses_total_by_status_view_method_total"
TRAFFIC = {"hello": 7, "items": 5, "nope": 3}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_example_config_counts_every_worker(name, tmp_path):
    with run_example(name, tmp_path) as base:
        send(base, TRAFFIC)
        status, body = get(f"{base}/metrics")
        assert status == 200, body
        samples = parse_samples(body.decode())
        # Prometheus' scrapes are excluded (PROMETHEUS_EXCLUDE_PATHS); the traffic counts exactly.
        for view, n in (("hello", 7), ("items", 5)):
            assert sample_value(samples, BY_VIEW, view=view, transport="http", method="GET") == n, name
            assert sample_value(samples, RESPONSES, status="200", view=view, method="GET") == n, name
        assert sample_value(samples, RESPONSES, status="404", view="<unnamed view>", method="GET") == 3
        assert sample_value(samples, "django_http_requests_before_middlewares_total") == 15

"""Several instances, one Prometheus, and remote write: examples/deploy/prometheus run for real.

Three instances of the example site (gunicorn sync, two workers each, each its own
multiprocess directory, each on its own free loopback port) get known, different traffic.
Prometheus "A" (Debian's, 2.42) scrapes the three every second with examples/deploy's
configuration (targets and the remote-write URL replaced by the loopback ones) and
recording rules, and forwards everything by remote write to Prometheus "B", started with
``--web.enable-remote-write-receiver`` as a stand-in for Thanos, Mimir or a managed service.
Both must show, summed across instances, exactly the requests sent, and one `up` per instance.
Everything started here is stopped here.
"""

from __future__ import annotations

import json
import urllib.parse
from contextlib import ExitStack

import yaml

from tests.deploy_servers import DEPLOY, by, prometheus, query, run_example, send, wait

EXAMPLE = DEPLOY / "prometheus" / "prometheus.yml"
BY_VIEW = "django_http_requests_total_by_view_transport_method_total"
DASHBOARD = DEPLOY.parent / "grafana" / "django.json"
#: Requests sent to each instance, per path: different per instance, so a swapped or lost
#: instance shows.
TRAFFIC = [{"hello": 3, "items": 2}, {"hello": 5, "items": 4}, {"hello": 7, "items": 6}]


def test_three_instances_one_prometheus_and_remote_write(tmp_path):
    example = yaml.safe_load(EXAMPLE.read_text())
    with ExitStack() as stack:
        # One stack per instance, so that one can be stopped while the others run.
        instances = [stack.enter_context(ExitStack()) for _ in TRAFFIC]
        bases = [i.enter_context(run_example("gunicorn-sync", tmp_path)) for i in instances]
        targets = [urllib.parse.urlsplit(b).netloc for b in bases]
        receiver = stack.enter_context(prometheus(tmp_path, "b", None, "--web.enable-remote-write-receiver"))

        config = dict(example)
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str((EXAMPLE.parent / f).resolve()) for f in example["rule_files"]]
        (job,) = config["scrape_configs"]
        job["static_configs"] = [{"targets": targets}]
        (rw,) = config["remote_write"]
        rw["url"] = f"{receiver}/api/v1/write"
        rw["queue_config"] = {"batch_send_deadline": "1s"}
        scraper = stack.enter_context(prometheus(tmp_path, "a", config))

        targets_traffic = list(zip(targets, TRAFFIC, strict=True))
        per_instance = f'sum by (instance, view) ({BY_VIEW}{{job="django"}})'
        per_view = f'sum by (view) ({BY_VIEW}{{job="django"}})'
        # One request per view first, scraped, then the rest: a counter's first sample has no
        # rate, so the rate rules need the counts to move between two scrapes.
        for base in bases:
            send(base, dict.fromkeys(TRAFFIC[0], 1))
        first = {(t, v): 1.0 for t, _ in targets_traffic for v in TRAFFIC[0]}
        wait("A: the first requests", lambda: by(query(scraper, per_instance), "instance", "view") == first)
        for base, traffic in zip(bases, TRAFFIC, strict=True):
            send(base, {v: n - 1 for v, n in traffic.items()})

        sent = {(t, v): float(traffic[v]) for t, traffic in targets_traffic for v in traffic}
        site = {(v,): sum(traffic[v] for traffic in TRAFFIC) for v in TRAFFIC[0]}
        figures = {}
        for name, base in (("A (scraper)", scraper), ("B (remote-write receiver)", receiver)):
            # Converged: every instance's last scrape (or the forwarded copy) holds all its traffic.
            wait(
                f"{name}: every request sent, per instance",
                lambda base=base: by(query(base, per_instance), "instance", "view") == sent,
            )
            # The dashboard's way: the instance label summed away, the site per view.
            assert by(query(base, per_view), "view") == site, name
            up = by(query(base, 'up{job="django"}'), "instance")
            assert up == dict.fromkeys([(t,) for t in targets], 1.0), (name, up)
            # Recorded by A's rules, forwarded to B with the rest.
            wait(
                f"{name}: job:up:sum",
                lambda base=base: by(query(base, "job:up:sum"), "job") == {("django",): 3.0},
            )
            wait(
                f"{name}: job:up:count",
                lambda base=base: by(query(base, "job:up:count"), "job") == {("django",): 3.0},
            )

            # The rule's first evaluations may predate the second scrape (a rate of 0): wait for
            # one after it, for every view.
            def moving(base=base):
                rates = query(base, "job_view:django_http_requests:rate5m")
                views = {r["metric"].get("view") for r in rates if float(r["value"][1]) > 0}
                return rates if views == set(TRAFFIC[0]) else None

            rates = wait(f"{name}: a per-view rate above 0", moving)
            assert {tuple(sorted(r["metric"])) for r in rates} == {("__name__", "job", "view")}, rates
            figures[name] = {
                "per instance": by(query(base, per_instance), "instance", "view"),
                "per view": by(query(base, per_view), "view"),
            }

        # The Grafana dashboard's queries, as Grafana sends them for job "django": every one is
        # valid on the real server, and what they aggregate carries no `instance` label.
        panels = json.loads(DASHBOARD.read_text())["panels"]
        exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
        answered = 0
        for expr in exprs:
            expr = expr.replace("$job", "django").replace("$__rate_interval", "1m")
            for r in query(scraper, expr):
                assert "instance" not in r["metric"], (expr, r)
                answered += 1
        assert answered >= 3, exprs  # the HTTP panels have data

        # An instance goes away: its `up` drops to 0, the rules count 2 of 3, the others' series stay.
        instances[-1].close()
        down = {(t,): 1.0 for t in targets[:-1]} | {(targets[-1],): 0.0}
        wait(
            "A: the stopped instance down", lambda: by(query(scraper, 'up{job="django"}'), "instance") == down
        )
        wait("A: job:up:sum 2", lambda: by(query(scraper, "job:up:sum"), "job") == {("django",): 2.0})
        assert by(query(scraper, "job:up:count"), "job") == {("django",): 3.0}

        print(f"\nsent per instance: {dict(zip(targets, TRAFFIC, strict=True))}")
        for name, fig in figures.items():
            print(f"{name}: {fig}")

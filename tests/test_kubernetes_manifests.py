"""examples/kubernetes: the Prometheus Operator manifests against the Operator's CRD schemas,
the plain scrape_config through promtool and through a real Prometheus, the bearer token end to end.

The ServiceMonitor and PodMonitor are validated with cloudcoil's models of the Operator's CRDs
(`cloudcoil-models-prometheus-operator`, generated from the CRDs' OpenAPI schemas: patterns,
enums and types are checked); those models accept unknown fields, so each manifest must also
survive a round trip unchanged (a misspelled field would be dropped, and the test says which).
The manifests must agree with each other: selectors, port names, the Secret and its key.

Debian's Prometheus (2.42+ds) is built without Kubernetes service discovery, so
`promtool check config` is run on the file as-is where the build has it, and otherwise on the
same job with `kubernetes_sd_configs` replaced by `file_sd_configs`; a real Prometheus then
runs the job's relabeling on file-discovered targets that carry the pod meta labels Kubernetes
discovery gives, and scrapes an example instance that requires the bearer token.

Independent of the core: runs once, on the compiled pass (skipped when
DJANGO_PROMETHEUS_NO_EXTENSIONS is set).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse

import pytest
import yaml

from tests.deploy_servers import by, get, prometheus, query, run_example, send, wait
from tests.servers import ROOT

pytestmark = pytest.mark.skipif(
    os.environ.get("DJANGO_PROMETHEUS_NO_EXTENSIONS") == "1",
    reason="independent of the core: checked once, on the compiled pass",
)

K8S = ROOT / "examples" / "kubernetes"


def _docs(name: str) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all((K8S / name).read_text()) if d}


def _dropped(given, dumped, path="") -> list[str]:
    """Paths present in ``given`` but not in the model's dump: fields the schema does not know."""
    if isinstance(given, dict):
        out = []
        for k, v in given.items():
            if not isinstance(dumped, dict) or k not in dumped:
                out.append(f"{path}.{k}")
            else:
                out += _dropped(v, dumped[k], f"{path}.{k}")
        return out
    if isinstance(given, list):
        return [
            p
            for i, (g, d) in enumerate(zip(given, dumped, strict=False))
            for p in _dropped(g, d, f"{path}[{i}]")
        ]
    return []


def _validate(kind: str, doc: dict) -> list[str]:
    from cloudcoil.models.prometheus_operator import v1

    model = getattr(v1, kind).model_validate(doc)
    return _dropped(doc, model.model_dump(by_alias=True, exclude_unset=True))


@pytest.mark.parametrize(
    "name, kind", [("servicemonitor.yaml", "ServiceMonitor"), ("podmonitor.yaml", "PodMonitor")]
)
def test_operator_manifests_match_the_crd_schema(name, kind):
    doc = _docs(name)[kind]
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert _validate(kind, doc) == []


def test_the_schema_check_catches_a_misspelled_field_and_a_bad_value():
    from pydantic import ValidationError

    doc = _docs("servicemonitor.yaml")["ServiceMonitor"]
    typo = json.loads(json.dumps(doc))
    typo["spec"]["endpoints"][0]["bearerTokenSecrett"] = {"name": "x", "key": "y"}
    assert _validate("ServiceMonitor", typo) == [".spec.endpoints[0].bearerTokenSecrett"]
    bad = json.loads(json.dumps(doc))
    bad["spec"]["endpoints"][0]["interval"] = "fifteen seconds"
    with pytest.raises(ValidationError):
        _validate("ServiceMonitor", bad)


def test_the_manifests_agree_with_each_other():
    app = _docs("deployment.yaml")
    deployment, service = app["Deployment"], app["Service"]
    secret = _docs("bearer-token.yaml")["Secret"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # The annotations the plain scrape_config reads point at the container's port.
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) in ports.values()
    # The Service and both monitors select these pods, on a named port that exists.
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    sm = _docs("servicemonitor.yaml")["ServiceMonitor"]["spec"]
    pm = _docs("podmonitor.yaml")["PodMonitor"]["spec"]
    assert sm["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert pm["selector"]["matchLabels"].items() <= labels.items()
    assert {e["port"] for e in sm["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in pm["podMetricsEndpoints"]} <= set(ports)
    # One Secret, one key: what the app accepts is what Prometheus sends.
    ref = {"name": secret["metadata"]["name"], "key": next(iter(secret["stringData"]))}
    env = {e["name"]: e for e in container["env"]}
    assert env["METRICS_BEARER_TOKEN"]["valueFrom"]["secretKeyRef"] == ref
    assert env["PROMETHEUS_MULTIPROC_DIR"]["value"] in {m["mountPath"] for m in container["volumeMounts"]}
    for endpoint in sm["endpoints"] + pm["podMetricsEndpoints"]:
        assert endpoint["authorization"] == {"type": "Bearer", "credentials": ref}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: `scripts/services.sh install` installs Debian's prometheus")
    return path


def _file_sd(config: dict, sd_file: str) -> dict:
    """The same config with each job's kubernetes_sd_configs replaced by a file_sd_config."""
    config = json.loads(json.dumps(config))
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["file_sd_configs"] = [{"files": [sd_file], "refresh_interval": "1s"}]
    return config


def test_the_plain_scrape_config_passes_promtool(tmp_path):
    promtool = _tool("promtool")
    res = subprocess.run(
        [promtool, "check", "config", str(K8S / "scrape-config.yaml")], capture_output=True, text=True
    )
    out = res.stdout + res.stderr
    if res.returncode != 0 and "field kubernetes_sd_configs not found" in out:
        # Debian's build has no Kubernetes discovery: check everything else of the job.
        config = _file_sd(
            yaml.safe_load((K8S / "scrape-config.yaml").read_text()), str(tmp_path / "pods.json")
        )
        (tmp_path / "pods.json").write_text("[]")
        (tmp_path / "token").write_text("x")
        job = config["scrape_configs"][0]
        job["authorization"]["credentials_file"] = str(tmp_path / "token")
        (tmp_path / "scrape.yml").write_text(json.dumps(config))
        res = subprocess.run(
            [promtool, "check", "config", str(tmp_path / "scrape.yml")], capture_output=True, text=True
        )
        out = res.stdout + res.stderr
    assert res.returncode == 0 and "SUCCESS" in out, out


def test_the_annotation_relabeling_and_the_bearer_token_in_a_real_prometheus(tmp_path):
    token = "k8s-example-token"
    with run_example("gunicorn-sync", tmp_path, METRICS_BEARER_TOKEN=token) as base:
        port = urllib.parse.urlsplit(base).port
        send(base, {"hello": 4})
        assert get(f"{base}/metrics")[0] == 401  # the token is required
        assert get(f"{base}/metrics", token)[0] == 200

        # What Kubernetes discovery gives for two pods: one annotated for scraping (its
        # __address__ on another port, as a pod IP without the annotated port), one not.
        meta = "__meta_kubernetes_pod_annotation_prometheus_io_"
        pods = [
            {"targets": ["127.0.0.1:1"], "labels": {
                f"{meta}scrape": "true", f"{meta}port": str(port), f"{meta}path": "/metrics",
                "__meta_kubernetes_namespace": "shop", "__meta_kubernetes_pod_name": "mysite-abc12",
                "__meta_kubernetes_pod_label_app_kubernetes_io_name": "mysite"}},
            {"targets": ["127.0.0.1:2"], "labels": {
                f"{meta}scrape": "false", "__meta_kubernetes_namespace": "shop",
                "__meta_kubernetes_pod_name": "other-xyz"}},
        ]  # fmt: skip
        (tmp_path / "pods.json").write_text(json.dumps(pods))
        (tmp_path / "token").write_text(token)
        config = _file_sd(
            yaml.safe_load((K8S / "scrape-config.yaml").read_text()), str(tmp_path / "pods.json")
        )
        config["global"] = {"scrape_interval": "1s"}
        config["scrape_configs"][0]["authorization"]["credentials_file"] = str(tmp_path / "token")
        with prometheus(tmp_path, "k8s", config) as api:
            series = 'django_http_requests_total_by_view_transport_method_total{view="hello"}'
            got = wait("the annotated pod scraped", lambda: query(api, series))
            (sample,) = got
            labels = sample["metric"]
            assert labels["instance"] == f"127.0.0.1:{port}"  # address rewritten to the annotated port
            assert (labels["namespace"], labels["pod"], labels["app"]) == ("shop", "mysite-abc12", "mysite")
            assert float(sample["value"][1]) == 4.0
            # The pod without the annotation is not a target at all; the one that is answers.
            assert by(query(api, "up"), "pod") == {("mysite-abc12",): 1.0}

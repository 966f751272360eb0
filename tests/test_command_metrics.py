"""Management command metrics: counted per run, delivered to a real Pushgateway and to textfiles.

The delivery tests run ``python -m django dp_job`` (tests/bg_project) as cron would: a
process that ends before any scrape. A failing run must leave the last success in place,
and a delivery that fails must change neither the command's output nor its exit status.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from django_prometheus import command_metrics
from tests.bg_project.management.commands import dp_job
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 60


# --- in-process: the counters --------------------------------------------------------------


def runs(command: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("django_command_runs_total", {"command": command, "outcome": outcome})
        or 0.0
    )


def durations(command: str, outcome: str) -> float:
    labels = {"command": command, "outcome": outcome}
    return REGISTRY.get_sample_value("django_command_duration_seconds_count", labels) or 0.0


@pytest.fixture
def recording(request) -> Iterator[None]:
    with override_settings(PROMETHEUS_COMMAND_METRICS=request.param):
        assert command_metrics.install()
        try:
            yield
        finally:
            command_metrics.uninstall()


def test_off_nothing_is_wrapped_or_registered():
    from django.core.management.base import BaseCommand

    assert command_metrics.chosen() == frozenset()
    assert not command_metrics.install()
    assert not getattr(BaseCommand.execute, "_django_prometheus", False)
    assert (
        REGISTRY.get_sample_value("django_command_runs_total", {"command": "dp_job", "outcome": "success"})
        is None
    )


@pytest.mark.parametrize("recording", [True, ["dp_job"]], indirect=True)
def test_each_run_counts_with_its_outcome(recording):
    before = {o: (runs("dp_job", o), durations("dp_job", o)) for o in ("success", "error")}
    call_command(dp_job.Command(), stdout=io.StringIO())
    call_command(dp_job.Command(), stdout=io.StringIO())
    with pytest.raises(CommandError, match="on purpose"):  # the command's own exception, unchanged
        call_command(dp_job.Command(), fail=True, stdout=io.StringIO())
    assert runs("dp_job", "success") - before["success"][0] == 2
    assert durations("dp_job", "success") - before["success"][1] == 2
    assert runs("dp_job", "error") - before["error"][0] == 1
    assert durations("dp_job", "error") - before["error"][1] == 1


@pytest.mark.parametrize("recording", [["dp_job"]], indirect=True)
def test_commands_not_named_are_not_recorded(recording):
    before = runs("diffsettings", "success")
    call_command("diffsettings", stdout=io.StringIO())
    assert runs("diffsettings", "success") == before == 0


@pytest.mark.parametrize("recording", [True], indirect=True)
def test_true_records_every_command_but_the_long_running_ones(recording):
    before = runs("diffsettings", "success")
    call_command("diffsettings", stdout=io.StringIO())
    assert runs("diffsettings", "success") - before == 1
    assert {"runserver", "shell", "dbshell", "test", "db_worker"} <= command_metrics.LONG_RUNNING


@pytest.mark.parametrize("value", ["yes", 1, ["ok", 2]])
def test_a_bad_setting_is_a_clear_error(value):
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(PROMETHEUS_COMMAND_METRICS=value):
        with pytest.raises(ImproperlyConfigured, match="PROMETHEUS_COMMAND_METRICS"):
            command_metrics.install()


# --- real processes: delivery ----------------------------------------------------------------


def run_job(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DP_BG_")}
    environ.update(DJANGO_SETTINGS_MODULE="tests.bg_project.settings", PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "django", "dp_job", *args],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory) -> Iterator[str]:
    """Debian's prometheus-pushgateway on a free loopback port (installed by scripts/services.sh)."""
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is not installed; run `scripts/services.sh install`")
    port = free_port()
    log = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"pushgateway exited with {proc.returncode}:\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"pushgateway did not listen within {STARTUP_SECONDS}s:\n{log.read_text()}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def gateway_values(url: str) -> dict[str, float]:
    """The gateway's ``django_command_last_*`` samples of group {job=django_command, command=dp_job}."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("django_command_last_"):
                assert s.labels == {"job": "django_command", "command": "dp_job", "instance": ""}, s.labels
                found[s.name] = s.value
    return found


def test_pushgateway_keeps_the_last_success_across_a_failing_run(pushgateway):
    off = run_job()
    t0 = time.time()
    ok = run_job(DP_BG_COMMAND_METRICS="1", DP_BG_PUSHGATEWAY_URL=pushgateway)
    t1 = time.time()
    assert (
        (ok.returncode, ok.stdout, ok.stderr)
        == (off.returncode, off.stdout, off.stderr)
        == (0, "dp_job ran\n", "")
    )
    first = gateway_values(pushgateway)
    assert set(first) == {
        "django_command_last_success_timestamp_seconds",
        "django_command_last_duration_seconds",
    }
    assert t0 <= first["django_command_last_success_timestamp_seconds"] <= t1
    assert 0 <= first["django_command_last_duration_seconds"] <= t1 - t0

    off_fail = run_job("--fail")
    t2 = time.time()
    failed = run_job("--fail", DP_BG_COMMAND_METRICS="1", DP_BG_PUSHGATEWAY_URL=pushgateway)
    t3 = time.time()
    assert (failed.returncode, failed.stdout, failed.stderr) == (
        off_fail.returncode,
        off_fail.stdout,
        off_fail.stderr,
    )
    assert failed.returncode == 1 and "dp_job failed on purpose" in failed.stderr
    second = gateway_values(pushgateway)
    assert set(second) == set(command_metrics.DELIVERED)
    assert (
        second["django_command_last_success_timestamp_seconds"]
        == first["django_command_last_success_timestamp_seconds"]
    )
    assert t2 <= second["django_command_last_failure_timestamp_seconds"] <= t3
    assert second["django_command_last_duration_seconds"] != first["django_command_last_duration_seconds"]


@pytest.mark.parametrize("args", [(), ("--fail",)])
def test_a_gateway_that_is_down_gives_one_warning_and_changes_nothing(args):
    off = run_job(*args)
    down = run_job(*args, DP_BG_COMMAND_METRICS="1", DP_BG_PUSHGATEWAY_URL=f"http://127.0.0.1:{free_port()}")
    assert (down.returncode, down.stdout) == (off.returncode, off.stdout)
    extra = down.stderr.replace(off.stderr, "", 1) if off.stderr else down.stderr
    assert extra.count("\n") == 1 and "could not push metrics of command 'dp_job'" in extra, down.stderr


def textfile_values(path: Path) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            assert s.labels == {"command": "dp_job"}
            found[s.name] = s.value
    return found


def test_textfile_is_replaced_atomically_and_keeps_the_last_success(tmp_path):
    env = {"DP_BG_COMMAND_METRICS": "1", "DP_BG_TEXTFILE_DIR": str(tmp_path)}
    t0 = time.time()
    assert run_job(**env).returncode == 0
    path = tmp_path / "django_command_dp_job.prom"
    first = textfile_values(path)
    assert set(first) == {
        "django_command_last_success_timestamp_seconds",
        "django_command_last_duration_seconds",
    }
    assert t0 <= first["django_command_last_success_timestamp_seconds"] <= time.time()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # node_exporter runs as another user
    inode = path.stat().st_ino

    assert run_job("--fail", **env).returncode == 1
    second = textfile_values(path)
    assert set(second) == set(command_metrics.DELIVERED)
    assert (
        second["django_command_last_success_timestamp_seconds"]
        == first["django_command_last_success_timestamp_seconds"]
    )
    assert path.stat().st_ino != inode  # a new file renamed over the old one, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["django_command_dp_job.prom"]  # no temp file left


@pytest.mark.parametrize("args", [(), ("--fail",)])
def test_an_unwritable_textfile_dir_gives_one_warning_and_changes_nothing(tmp_path, args):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")  # root writes anywhere: a path under a regular file fails for everyone
    off = run_job(*args)
    bad = run_job(*args, DP_BG_COMMAND_METRICS="1", DP_BG_TEXTFILE_DIR=str(not_a_dir / "textfiles"))
    assert (bad.returncode, bad.stdout) == (off.returncode, off.stdout)
    extra = bad.stderr.replace(off.stderr, "", 1) if off.stderr else bad.stderr
    assert extra.count("\n") == 1 and "could not write metrics of command 'dp_job'" in extra, bad.stderr

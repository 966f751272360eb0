"""uvicorn on its own (ASGI), several worker processes, multiprocess mode.

    rm -rf /run/metrics && mkdir -p /run/metrics
    PROMETHEUS_MULTIPROC_DIR=/run/metrics python uvicorn_run.py

uvicorn has no configuration file: this is its command line as code
(`uvicorn mysite.asgi:application --workers 2 --host 127.0.0.1 --port 8000` is the same).
uvicorn's supervisor calls no hook when a worker dies: each scrape of /metrics folds the
files of workers that are gone (see docs/exporters.md, "Without the hook").
"""

import os

import uvicorn

if __name__ == "__main__":
    host, _, port = os.environ.get("BIND", "127.0.0.1:8000").rpartition(":")
    uvicorn.run(
        "mysite.asgi:application",
        host=host,
        port=int(port),
        workers=int(os.environ.get("WEB_CONCURRENCY", "2")),
        # uvicorn's access log is per request on stdout: Prometheus has the counts.
        access_log=False,
        # Uvicorn's lifespan protocol: Django does not implement it.
        lifespan="off",
    )

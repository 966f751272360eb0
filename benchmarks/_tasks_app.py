"""A trivial ``django.tasks`` task for ``bench_background`` (imported only after settings exist)."""

from django.tasks import task


@task
def trivial() -> None:
    return None

"""django.tasks tasks with a known outcome: the metrics of a mix of them are known exactly."""

from django.tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="slow")
def fail(kind: str) -> None:
    raise {"value": ValueError, "key": KeyError}[kind](kind)

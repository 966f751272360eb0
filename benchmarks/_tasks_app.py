"""A trivial ``django.tasks`` task function for ``bench_background``.

A plain module-level function: ``bench_background`` makes the task (``django.tasks.task``)
once settings exist, because the decorator reads ``settings.TASKS`` and asv imports every
module here, before any settings, to discover the benchmarks.
"""


def trivial() -> None:
    return None

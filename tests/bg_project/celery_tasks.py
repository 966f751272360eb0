"""Celery tasks with known outcomes: success, failure by exception class, one retry, a Reject."""

from celery import shared_task
from celery.exceptions import Reject


@shared_task(name="bg.add")
def add(a, b):
    return a + b


@shared_task(name="bg.fail")
def fail(kind):
    raise {"value": ValueError, "key": KeyError}[kind](kind)


@shared_task(name="bg.retry_once", bind=True, max_retries=3)
def retry_once(self):
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "second try"


@shared_task(name="bg.reject")
def reject():
    raise Reject("not today", requeue=False)

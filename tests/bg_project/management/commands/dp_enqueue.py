from django.core.management.base import BaseCommand

from tests.bg_project import tasks

#: What ``dp_enqueue`` enqueues: 4 additions, 2 ValueError failures, 1 KeyError failure.
MIX = [(tasks.add, (1, 2))] * 4 + [(tasks.fail, ("value",))] * 2 + [(tasks.fail, ("key",))]


class Command(BaseCommand):
    help = "Enqueues the known mix of django.tasks work on the configured backend."

    def handle(self, *args, **options):
        for task, arguments in MIX:
            task.enqueue(*arguments)
        self.stdout.write(f"enqueued {len(MIX)}")

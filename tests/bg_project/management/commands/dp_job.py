from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "A cron-like job: prints a line, then succeeds, or fails with --fail (exit status 1)."

    def add_arguments(self, parser):
        parser.add_argument("--fail", action="store_true")

    def handle(self, *args, **options):
        self.stdout.write("dp_job ran")
        if options["fail"]:
            raise CommandError("dp_job failed on purpose")

"""`manage.py remove_orphan_attachments`: remove uploads that no message took within ATTACHMENT_ORPHAN_HOURS.

Rows and their files (the files after each row's delete commits). Safe beside live sends: each orphan is
locked and checked again before it goes, so an upload a send has just taken stays. Run it from cron, e.g.
hourly; `--dry-run` only counts.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from messaging.attachments import orphan_attachments, remove_orphan


class Command(BaseCommand):
    help = "Remove attachment uploads never sent with a message, older than ATTACHMENT_ORPHAN_HOURS (rows and files)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count the orphans; remove nothing.")

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        now = timezone.now()
        ids = list(orphan_attachments(now).order_by("id").values_list("id", flat=True))
        hours = settings.ATTACHMENT_ORPHAN_HOURS
        if dry_run:
            self.stdout.write(f"{len(ids)} uploads older than {hours} h were never sent (dry run: nothing removed).")
            return
        removed = 0
        for done, attachment_id in enumerate(ids, start=1):
            removed += remove_orphan(attachment_id, now)
            if done % 500 == 0:
                self.stdout.write(f"  {done}/{len(ids)} checked, {removed} removed")
        self.stdout.write(
            self.style.SUCCESS(f"Removed {removed} uploads never sent within {hours} h ({len(ids) - removed} were sent meanwhile).")
        )

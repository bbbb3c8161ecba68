"""Attachments (messaging.attachments) and the metadata a message keeps of them."""

import django.db.models.deletion
import messaging.models
from django.conf import settings
from django.db import migrations, models


def add_attachments_column(apps, schema_editor):
    """Message.attachments. On SQLite a plain ADD COLUMN: Django's AddField would rebuild the table there
    (a JSON default), which drops the full-text triggers of 0004 and copies every message."""
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(
            "ALTER TABLE messaging_message ADD COLUMN attachments text NOT NULL DEFAULT '[]' "
            "CHECK (JSON_VALID(attachments) OR attachments IS NULL)"
        )
        return
    field = models.JSONField(blank=True, default=list)
    field.set_attributes_from_name("attachments")
    schema_editor.add_field(apps.get_model("messaging", "Message"), field)


def drop_attachments_column(apps, schema_editor):
    schema_editor.execute("ALTER TABLE messaging_message DROP COLUMN attachments")


class Migration(migrations.Migration):

    dependencies = [
        ('messaging', '0004_search_index'),
        ('rooms', '0002_membership_left_at_index'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name='message',
                    name='attachments',
                    field=models.JSONField(blank=True, default=list),
                ),
            ],
            database_operations=[migrations.RunPython(add_attachments_column, drop_attachments_column)],
        ),
        migrations.CreateModel(
            name='Attachment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200)),
                ('size', models.BigIntegerField()),
                ('content_type', models.CharField(max_length=100)),
                ('width', models.PositiveIntegerField(blank=True, null=True)),
                ('height', models.PositiveIntegerField(blank=True, null=True)),
                ('file', models.FileField(max_length=255, upload_to=messaging.models.attachment_path)),
                ('thumbnail', models.FileField(blank=True, max_length=255, upload_to=messaging.models.attachment_path)),
                ('created_at', models.DateTimeField(db_index=True)),
                ('message', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='attachment_files', to='messaging.message')),
                ('room', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attachments', to='rooms.room')),
                ('uploader', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='attachments', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'indexes': [models.Index(condition=models.Q(('message__isnull', True)), fields=['room', 'uploader'], name='attachment_pending')],
            },
        ),
    ]

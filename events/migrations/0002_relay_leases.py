from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="RelayLease",
            fields=[
                ("partition", models.PositiveIntegerField(primary_key=True, serialize=False)),
                ("partition_count", models.PositiveIntegerField()),
                ("owner", models.CharField(blank=True, max_length=64)),
                ("epoch", models.BigIntegerField(default=0)),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={"ordering": ["partition"]},
        ),
        migrations.CreateModel(
            name="RelayMember",
            fields=[
                ("name", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("expires_at", models.DateTimeField()),
            ],
        ),
    ]

"""Input shapes of the messaging REST edge. Output shapes come from messaging.services (the contract's Message)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from .services import HISTORY_MAX_LIMIT


class HistoryQuerySerializer(serializers.Serializer):
    after_seq = serializers.IntegerField(required=False, min_value=0)
    before_seq = serializers.IntegerField(required=False, min_value=1)
    since = serializers.CharField(required=False, max_length=64)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=HISTORY_MAX_LIMIT, default=50)

    def validate_since(self, value: str) -> Any:
        # A "+" in a query string arrives as a space: 2026-01-01T00:00:00 00:00 means +00:00.
        parsed = parse_datetime(value.strip().replace(" ", "+"))
        if parsed is None:
            raise serializers.ValidationError("Must be an ISO 8601 time, e.g. 2026-11-26T09:00:00+00:00.")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed


class SendMessageSerializer(serializers.Serializer):
    client_id = serializers.CharField(max_length=64, trim_whitespace=False)
    # Length and emptiness are the service's rules (body_too_long, body_empty), so the REST and WebSocket
    # sends refuse the same bodies with the same codes; here only the type is checked.
    body = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=64 * 1024)


class ReadSerializer(serializers.Serializer):
    seq = serializers.IntegerField(min_value=0)

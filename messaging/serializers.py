"""Input shapes of the messaging REST edge. Output shapes come from messaging.services (the contract's Message)."""

from __future__ import annotations

from rest_framework import serializers


class SendMessageSerializer(serializers.Serializer):
    client_id = serializers.CharField(max_length=64, trim_whitespace=False)
    # Length and emptiness are the service's rules (body_too_long, body_empty), so the REST and WebSocket
    # sends refuse the same bodies with the same codes; here only the type is checked. A message that
    # carries attachments may have no body at all.
    body = serializers.CharField(
        default="", allow_null=True, allow_blank=True, trim_whitespace=False, max_length=64 * 1024
    )
    # Shapes are checked by the service (invalid_reply, attachments), the same for REST and the socket.
    reply_to = serializers.JSONField(required=False, allow_null=True)
    attachments = serializers.JSONField(required=False, allow_null=True)


class EditMessageSerializer(serializers.Serializer):
    body = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=64 * 1024)


class ReadSerializer(serializers.Serializer):
    seq = serializers.IntegerField(min_value=0)

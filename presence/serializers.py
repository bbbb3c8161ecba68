"""Response shapes of the presence REST edge, for the OpenAPI schema (the service builds the data)."""

from __future__ import annotations

from rest_framework import serializers

from accounts.serializers import PublicUserSerializer


class MemberSerializer(serializers.Serializer):
    user = PublicUserSerializer()
    joined_at = serializers.DateTimeField(allow_null=True)
    last_read_seq = serializers.IntegerField()
    connected = serializers.BooleanField(help_text="Any chat socket of theirs to the room is open, on any process.")
    left_at = serializers.DateTimeField(
        allow_null=True, help_text="Their last socket to the room closed or they left it, whichever is later."
    )
    role = serializers.ChoiceField(["owner", "moderator", "member"])


class MembersPageSerializer(serializers.Serializer):
    results = MemberSerializer(many=True)
    has_more = serializers.BooleanField()

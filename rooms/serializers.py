"""The contract's Room shape, and the input shapes of the rooms REST edge (for the OpenAPI schema).

Validation rules (title 1-100 characters, max_personnel 2-10000) live in rooms.services, so REST, GraphQL,
the admin and the pages refuse the same input with the same messages; the input serializers here only
describe the body for the schema and are never used to validate it.
"""

from __future__ import annotations

from rest_framework import serializers

from accounts.serializers import PublicUserSerializer

from .models import MAX_MAX_PERSONNEL, MIN_MAX_PERSONNEL, TITLE_MAX_LENGTH, Room


class RoomSerializer(serializers.ModelSerializer):
    """Room = {id, title, owner: User | null, max_personnel, personnel, created_at, last_seq}."""

    owner = PublicUserSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Room
        fields = ["id", "title", "owner", "max_personnel", "personnel", "created_at", "last_seq"]
        read_only_fields = fields


class RoomCreateSerializer(serializers.Serializer):
    title = serializers.CharField(min_length=1, max_length=TITLE_MAX_LENGTH)
    max_personnel = serializers.IntegerField(min_value=MIN_MAX_PERSONNEL, max_value=MAX_MAX_PERSONNEL)


class RoomUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(min_length=1, max_length=TITLE_MAX_LENGTH, required=False)
    max_personnel = serializers.IntegerField(min_value=MIN_MAX_PERSONNEL, max_value=MAX_MAX_PERSONNEL, required=False)


class MembershipResultSerializer(serializers.Serializer):
    """The answer of join and leave: {room: Room, member: bool}."""

    room = RoomSerializer()
    member = serializers.BooleanField()

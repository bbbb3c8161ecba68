"""The contract's Room shape, and the input shapes of the rooms REST edge (for the OpenAPI schema).

Validation rules (title 1-100 characters, max_personnel 2-10000) live in rooms.services, so REST, GraphQL,
the admin and the pages refuse the same input with the same messages; the input serializers here only
describe the body for the schema and are never used to validate it.
"""

from __future__ import annotations

from rest_framework import serializers

from accounts.serializers import PublicUserSerializer

from .models import MAX_MAX_PERSONNEL, MIN_MAX_PERSONNEL, TITLE_MAX_LENGTH, HistoryVisibility, Room, Visibility


class RoomSerializer(serializers.ModelSerializer):
    """Room = {id, title, owner: User | null, max_personnel, personnel, created_at, last_seq, kind, visibility,
    history_visibility, my_role}. `my_role` is the caller's: services annotate it (rooms_for) or set it."""

    owner = PublicUserSerializer(read_only=True, allow_null=True)
    my_role = serializers.SerializerMethodField()

    class Meta:
        model = Room
        fields = [
            "id", "title", "owner", "max_personnel", "personnel", "created_at", "last_seq",
            "kind", "visibility", "history_visibility", "my_role",
        ]
        read_only_fields = fields

    def get_my_role(self, room: Room) -> str | None:
        return getattr(room, "my_role", None)


class RoomCreateSerializer(serializers.Serializer):
    title = serializers.CharField(min_length=1, max_length=TITLE_MAX_LENGTH)
    max_personnel = serializers.IntegerField(min_value=MIN_MAX_PERSONNEL, max_value=MAX_MAX_PERSONNEL)
    visibility = serializers.ChoiceField(Visibility.choices, required=False)
    history_visibility = serializers.ChoiceField(HistoryVisibility.choices, required=False)


class RoomUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(min_length=1, max_length=TITLE_MAX_LENGTH, required=False)
    max_personnel = serializers.IntegerField(min_value=MIN_MAX_PERSONNEL, max_value=MAX_MAX_PERSONNEL, required=False)
    visibility = serializers.ChoiceField(Visibility.choices, required=False)
    history_visibility = serializers.ChoiceField(HistoryVisibility.choices, required=False)


class UserIdSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()


class RoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(["moderator", "member"])


class ModerationResultSerializer(serializers.Serializer):
    """The answer of role, owner, kick and ban: {room: Room, user: User, role: the user's role or null}."""

    room = RoomSerializer()
    user = PublicUserSerializer()
    role = serializers.CharField(allow_null=True)


class InviteCreateSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(required=False)
    username = serializers.CharField(required=False, help_text="Instead of user_id: the invited user's username.")
    max_uses = serializers.IntegerField(required=False, min_value=1)
    expires_in_seconds = serializers.IntegerField(required=False, min_value=60)


class InviteSummarySerializer(serializers.Serializer):
    """An invitation as GET /invites lists it (no token: only its hash is stored)."""

    id = serializers.IntegerField()
    user = PublicUserSerializer(allow_null=True)
    created_by = PublicUserSerializer(allow_null=True)
    max_uses = serializers.IntegerField(allow_null=True)
    uses = serializers.IntegerField()
    expires_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class InviteListSerializer(serializers.Serializer):
    results = InviteSummarySerializer(many=True)
    has_more = serializers.BooleanField()


class InviteSerializer(InviteSummarySerializer):
    """{token (shown once: only its hash is stored), room: Room, user: User | null, max_uses, uses, expires_at}
    and the summary's id, created_by, created_at."""

    token = serializers.CharField()
    room = RoomSerializer()


class MembershipResultSerializer(serializers.Serializer):
    """The answer of join and leave: {room: Room, member: bool}."""

    room = RoomSerializer()
    member = serializers.BooleanField()

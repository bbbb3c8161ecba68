"""REST edge of rooms: list/search, create, detail, update, delete, join, leave; roles, kick, ban,
invitations, direct messages and blocks.

Thin: count the caller's write against its rate limit (rooms.limits), read the body, call rooms.services,
shape the answer with RoomSerializer. Every refusal is a
DomainError raised by the service (room_full, forbidden, not_found, validation_error, ...), turned into the
contract's body by core.errors; no view has its own error handling.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.domain import InvalidInput
from core.query_params import text_param

from . import services
from .limits import DM_OPENS, INVITE_ACCEPTS, INVITE_CREATIONS, ROOM_CREATIONS, ROOM_WRITES
from .models import TITLE_MAX_LENGTH, Room
from .serializers import (
    InviteCreateSerializer,
    InviteListSerializer,
    InviteSerializer,
    MembershipResultSerializer,
    ModerationResultSerializer,
    RoleSerializer,
    RoomCreateSerializer,
    RoomSerializer,
    RoomUpdateSerializer,
    UserIdSerializer,
)


def _body(request: Request) -> dict[str, Any]:
    """The JSON body as an object; a list or a scalar is a validation error, not a 500."""
    data = request.data
    if not isinstance(data, dict):
        raise InvalidInput("The body must be a JSON object.", fields={"non_field_errors": ["Expected an object."]})
    return data


def _room(room: Any) -> dict[str, Any]:
    return dict(RoomSerializer(room).data)


class RoomListView(ListAPIView):
    """GET: rooms, newest first, `search` in the title, page-number pages. POST: create a room."""

    serializer_class = RoomSerializer

    def get_queryset(self) -> QuerySet[Room]:
        rooms = services.search_rooms(text_param(self.request.query_params, "search", max_length=TITLE_MAX_LENGTH))
        return rooms.annotate(my_role=services.my_role_of(self.request.user))

    @extend_schema(
        operation_id="rooms_list",
        parameters=[
            OpenApiParameter(
                "search", {"type": "string", "maxLength": TITLE_MAX_LENGTH}, description="Part of the title, any case."
            )
        ],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(request=RoomCreateSerializer, responses={201: RoomSerializer})
    def post(self, request: Request) -> Response:
        ROOM_CREATIONS.hit(request.user.pk)
        data = _body(request)
        room = services.create_room(
            owner=request.user,
            title=data.get("title"),
            max_personnel=data.get("max_personnel"),
            visibility=data.get("visibility"),
            history_visibility=data.get("history_visibility"),
        )
        return Response(_room(room), status=status.HTTP_201_CREATED)


class RoomDetailView(APIView):
    @extend_schema(responses=RoomSerializer)
    def get(self, request: Request, room_id: int) -> Response:
        return Response(_room(services.get_visible_room(room_id, request.user)))

    @extend_schema(request=RoomUpdateSerializer, responses=RoomSerializer)
    def patch(self, request: Request, room_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        data = _body(request)
        room = services.update_room(
            room_id=room_id,
            actor=request.user,
            title=data.get("title"),
            max_personnel=data.get("max_personnel"),
            visibility=data.get("visibility"),
            history_visibility=data.get("history_visibility"),
        )
        return Response(_room(room))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, room_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        services.delete_room(room_id=room_id, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomJoinView(APIView):
    @extend_schema(request=None, responses=MembershipResultSerializer)
    def post(self, request: Request, room_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        change = services.join_room(room_id=room_id, user=request.user)
        return Response({"room": _room(change.room), "member": True})


class RoomLeaveView(APIView):
    @extend_schema(request=None, responses=MembershipResultSerializer)
    def post(self, request: Request, room_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        change = services.leave_room(room_id=room_id, user=request.user)
        return Response({"room": _room(change.room), "member": False})


# --- roles and moderation ----------------------------------------------------------------------------
def _moderation(result: services.ModerationResult) -> Response:
    return Response({"room": _room(result.room), "user": result.user.as_public_dict(), "role": result.role})


class MemberRoleView(APIView):
    """POST {role: "moderator" | "member"}: the owner sets a member's role."""

    @extend_schema(request=RoleSerializer, responses=ModerationResultSerializer)
    def post(self, request: Request, room_id: int, user_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        data = _body(request)
        return _moderation(services.set_role(room_id=room_id, user_id=user_id, actor=request.user, role=data.get("role")))


class RoomOwnerView(APIView):
    """POST {user_id}: the owner hands the room to another member (and stays as a moderator)."""

    @extend_schema(request=UserIdSerializer, responses=ModerationResultSerializer)
    def post(self, request: Request, room_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        data = _body(request)
        return _moderation(
            services.transfer_ownership(room_id=room_id, user_id=data.get("user_id"), actor=request.user)
        )


class MemberKickView(APIView):
    @extend_schema(request=None, responses=ModerationResultSerializer)
    def post(self, request: Request, room_id: int, user_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        return _moderation(services.kick_member(room_id=room_id, user_id=user_id, actor=request.user))


class MemberBanView(APIView):
    """POST bans (and kicks a member), DELETE lifts the ban (204)."""

    @extend_schema(request=None, responses=ModerationResultSerializer)
    def post(self, request: Request, room_id: int, user_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        return _moderation(services.ban_member(room_id=room_id, user_id=user_id, actor=request.user))

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, room_id: int, user_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        services.unban_member(room_id=room_id, user_id=user_id, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomBansView(APIView):
    """GET: the room's bans, for its owner, moderators and staff."""

    @extend_schema(responses=None)
    def get(self, request: Request, room_id: int) -> Response:
        return Response({"results": services.bans_of(room_id=room_id, actor=request.user), "has_more": False})


# --- invitations -------------------------------------------------------------------------------------
class RoomInvitesView(APIView):
    """GET: the invitations that can still be used (owner, moderators, staff). POST: invite a user, or make a link."""

    @extend_schema(responses=InviteListSerializer)
    def get(self, request: Request, room_id: int) -> Response:
        return Response({"results": services.room_invites(room_id=room_id, actor=request.user), "has_more": False})

    @extend_schema(request=InviteCreateSerializer, responses={201: InviteSerializer})
    def post(self, request: Request, room_id: int) -> Response:
        INVITE_CREATIONS.hit(request.user.pk)
        data = _body(request)
        new = services.create_invite(
            room_id=room_id,
            actor=request.user,
            user_id=data.get("user_id"),
            username=data.get("username"),
            max_uses=data.get("max_uses"),
            expires_in_seconds=data.get("expires_in_seconds"),
        )
        body = services.invite_dict(new)
        body["room"] = _room(body["room"])
        return Response(body, status=status.HTTP_201_CREATED)


class RoomInviteView(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, room_id: int, token: str) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        services.revoke_invite(room_id=room_id, token=token, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RoomInviteByIdView(APIView):
    """DELETE: revoke by the id the list shows (the list cannot show tokens)."""

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, room_id: int, invite_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        services.revoke_invite_by_id(room_id=room_id, invite_id=invite_id, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InviteAcceptView(APIView):
    @extend_schema(request=None, responses=MembershipResultSerializer)
    def post(self, request: Request, token: str) -> Response:
        INVITE_ACCEPTS.hit(request.user.pk)
        change = services.accept_invite(token=token, user=request.user)
        return Response({"room": _room(change.room), "member": True})


# --- direct messages and blocks ----------------------------------------------------------------------
class DmsView(APIView):
    """POST {user_id}: the pair's one DM: 201 when it was made now, 200 when it existed."""

    @extend_schema(request=UserIdSerializer, responses={200: RoomSerializer, 201: RoomSerializer})
    def post(self, request: Request) -> Response:
        DM_OPENS.hit(request.user.pk)
        data = _body(request)
        result = services.open_dm(user=request.user, user_id=data.get("user_id"))
        return Response(_room(result.room), status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class BlocksView(APIView):
    """GET: whom the caller blocks. POST {user_id}: block (204; idempotent)."""

    @extend_schema(responses=None)
    def get(self, request: Request) -> Response:
        return Response({"results": services.blocked_users(request.user), "has_more": False})

    @extend_schema(request=UserIdSerializer, responses={204: None})
    def post(self, request: Request) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        data = _body(request)
        services.block_user(user=request.user, user_id=data.get("user_id"))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BlockView(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, user_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        services.unblock_user(user=request.user, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)

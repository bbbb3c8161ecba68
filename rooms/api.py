"""REST edge of rooms: list/search, create, detail, update, delete, join, leave.

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
from .limits import ROOM_CREATIONS, ROOM_WRITES
from .models import TITLE_MAX_LENGTH, Room
from .serializers import MembershipResultSerializer, RoomCreateSerializer, RoomSerializer, RoomUpdateSerializer


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
        return services.search_rooms(text_param(self.request.query_params, "search", max_length=TITLE_MAX_LENGTH))

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
            owner=request.user, title=data.get("title"), max_personnel=data.get("max_personnel")
        )
        return Response(_room(room), status=status.HTTP_201_CREATED)


class RoomDetailView(APIView):
    @extend_schema(responses=RoomSerializer)
    def get(self, request: Request, room_id: int) -> Response:
        return Response(_room(services.get_room(room_id)))

    @extend_schema(request=RoomUpdateSerializer, responses=RoomSerializer)
    def patch(self, request: Request, room_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        data = _body(request)
        room = services.update_room(
            room_id=room_id, actor=request.user, title=data.get("title"), max_personnel=data.get("max_personnel")
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

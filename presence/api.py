"""REST edge of presence: the room's members with their presence. Thin: the service does the rest."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services
from .serializers import MembersPageSerializer


class RoomMembersView(APIView):
    @extend_schema(responses=MembersPageSerializer)
    def get(self, request: Request, room_id: int) -> Response:
        # Every member in one answer: a room has at most MAX_MAX_PERSONNEL members.
        return Response({"results": services.members(room_id=room_id, user=request.user), "has_more": False})

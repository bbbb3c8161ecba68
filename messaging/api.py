"""REST edge of messaging: history, send, read position, and the caller's rooms with unread counts.

Thin: parse and validate input, call messaging.services, shape the output. Refusals are DomainErrors,
turned into the contract's body by core.errors.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.domain import InvalidInput
from core.query_params import PageNumberPagination, integer_param, text_param, time_param
from core.upload_limits import CappedUploadHandler, UploadTooLarge, declared_length
from rooms.limits import ROOM_WRITES
from rooms.serializers import RoomSerializer
from rooms.services import require_member

from . import attachments, services
from .limits import ATTACHMENT_UPLOADS, MESSAGE_SEARCHES, MESSAGE_SENDS
from .search import SearchFilters, search_messages
from .serializers import EditMessageSerializer, ReadSerializer, SendMessageSerializer

HISTORY_DEFAULT_LIMIT = 50
HISTORY_PARAMETERS = [
    OpenApiParameter("after_seq", {"type": "integer", "minimum": 0}, description="Messages after this seq."),
    OpenApiParameter("before_seq", {"type": "integer", "minimum": 1}, description="Messages before this seq."),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="Messages created at or after this time."),
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": services.HISTORY_MAX_LIMIT},
        description=f"{HISTORY_DEFAULT_LIMIT} by default.",
    ),
]


class RoomMessagesView(APIView):
    @extend_schema(parameters=HISTORY_PARAMETERS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, room_id: int) -> Response:
        params = request.query_params
        results, has_more = services.history(
            room_id=room_id,
            user=request.user,
            after_seq=integer_param(params, "after_seq", minimum=0),
            before_seq=integer_param(params, "before_seq", minimum=1),
            since=time_param(params, "since"),
            limit=integer_param(
                params, "limit", minimum=1, maximum=services.HISTORY_MAX_LIMIT, default=HISTORY_DEFAULT_LIMIT
            ),
        )
        return Response({"results": results, "has_more": has_more})

    @extend_schema(request=SendMessageSerializer, responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT})
    def post(self, request: Request, room_id: int) -> Response:
        MESSAGE_SENDS.hit(request.user.pk)
        payload = SendMessageSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        result = services.send_message(room_id=room_id, sender=request.user, **payload.validated_data)
        return Response(services.with_my_reactions([result.message], request.user)[0], status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class MessageView(APIView):
    """PATCH edits (its sender), DELETE turns it into a tombstone (sender, room owner, staff): 200 Message."""

    @extend_schema(request=EditMessageSerializer, responses=OpenApiTypes.OBJECT)
    def patch(self, request: Request, room_id: int, message_id: int) -> Response:
        MESSAGE_SENDS.hit(request.user.pk)
        payload = EditMessageSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        message = services.edit_message(
            room_id=room_id, message_id=message_id, actor=request.user, body=payload.validated_data["body"]
        )
        return Response(services.with_my_reactions([message], request.user)[0])

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def delete(self, request: Request, room_id: int, message_id: int) -> Response:
        MESSAGE_SENDS.hit(request.user.pk)
        return Response(services.delete_message(room_id=room_id, message_id=message_id, actor=request.user))


class ReactionView(APIView):
    """PUT adds the caller's reaction, DELETE removes it; both idempotent, both 200 Message."""

    def _set(self, request: Request, room_id: int, message_id: int, emoji: str, on: bool) -> Response:
        MESSAGE_SENDS.hit(request.user.pk)
        message = services.set_reaction(room_id=room_id, message_id=message_id, actor=request.user, emoji=emoji, on=on)
        return Response(services.with_my_reactions([message], request.user)[0])

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def put(self, request: Request, room_id: int, message_id: int, emoji: str) -> Response:
        return self._set(request, room_id, message_id, emoji, True)

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def delete(self, request: Request, room_id: int, message_id: int, emoji: str) -> Response:
        return self._set(request, room_id, message_id, emoji, False)


class RoomReadView(APIView):
    @extend_schema(request=ReadSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, room_id: int) -> Response:
        ROOM_WRITES.hit(request.user.pk)
        payload = ReadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        position = services.mark_read(room_id=room_id, user=request.user, seq=payload.validated_data["seq"])
        return Response(
            {"last_read_seq": position.last_read_seq, "unread": position.unread, "mentions": position.mentions}
        )


class MyRoomsView(APIView):
    """The caller's rooms, newest activity first, each with unread, last_read_seq and last_message."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        paginator = PageNumberPagination()
        memberships = paginator.paginate_queryset(services.my_rooms_queryset(request.user), request, view=self)
        assert memberships is not None
        last_messages = services.last_messages_by_id([m.last_message_id for m in memberships])
        rooms: list[dict[str, Any]] = []
        for membership in memberships:
            membership.room.my_role = membership.role
            room = dict(RoomSerializer(membership.room).data)
            room.update(
                {
                    "unread": membership.unread,
                    "mentions": membership.mentions,
                    "last_read_seq": membership.last_read_seq,
                    "last_message": last_messages.get(membership.last_message_id),
                }
            )
            rooms.append(room)
        return paginator.get_paginated_response(rooms)


SEARCH_PARAMETERS = [
    OpenApiParameter("q", str, required=True, description="1-200 characters: words (English is stemmed) or CJK text."),
    OpenApiParameter("room", int, description="Only this room (an id)."),
    OpenApiParameter("sender", int, description="Only messages of this user (an id)."),
    OpenApiParameter("after", OpenApiTypes.DATETIME, description="Created at or after this time."),
    OpenApiParameter("before", OpenApiTypes.DATETIME, description="Created before this time."),
    OpenApiParameter("has", str, enum=["attachment"], description="Only messages that carry an attachment."),
    OpenApiParameter("page", int),
]


class SearchPagination(PageNumberPagination):
    page_size = 20


class MessageSearchView(APIView):
    """Full-text search over the messages the caller may read: ranked, paged, with escaped snippets."""

    @extend_schema(parameters=SEARCH_PARAMETERS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        MESSAGE_SEARCHES.hit(request.user.pk)
        params = request.query_params
        has = text_param(params, "has", max_length=20)
        if has not in ("", "attachment"):
            raise InvalidInput(fields={"has": ['Only "attachment" is supported.']})
        filters = SearchFilters(
            room_id=integer_param(params, "room", minimum=1),
            sender_id=integer_param(params, "sender", minimum=1),
            after=time_param(params, "after"),
            before=time_param(params, "before"),
            has_attachment=has == "attachment",
        )
        results = search_messages(user=request.user, q=params.get("q"), filters=filters)
        paginator = SearchPagination()
        page = paginator.paginate_queryset(results, request, view=self)  # type: ignore[arg-type]
        assert page is not None
        return paginator.get_paginated_response(services.search_results(page, request.user))


class RoomAttachmentsView(APIView):
    """POST a file (multipart field `file`) to a room: 201 Attachment, members only.

    The body's size is refused before it is read: its declared length here, before authentication (whose
    CSRF check may parse the body), and by CappedUploadHandler as it streams. On the ASGI server the
    BodySizeLimit middleware refuses it earlier still (chattalk_project.asgi)."""

    parser_classes = [MultiPartParser]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        length = declared_length(request.META.get("CONTENT_LENGTH"))
        if length is not None and length > attachments.upload_body_limit():
            raise UploadTooLarge(attachments.too_large_detail())
        django_request = request._request
        django_request.upload_handlers = [
            CappedUploadHandler(
                django_request, max_bytes=settings.ATTACHMENT_MAX_BYTES, detail=attachments.too_large_detail()
            ),
            MemoryFileUploadHandler(django_request),
            TemporaryFileUploadHandler(django_request),
        ]
        super().initial(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
        responses={201: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, room_id: int) -> Response:
        ATTACHMENT_UPLOADS.hit(request.user.pk)
        require_member(room_id, request.user)  # before the body is parsed (a bearer request)
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput(fields={"file": ["Send one file in the multipart field `file`."]})
        attachment = attachments.upload_attachment(room_id=room_id, uploader=request.user, upload=upload)
        return Response(attachment, status=status.HTTP_201_CREATED)


class AttachmentDownloadView(APIView):
    """GET a file or its thumbnail through a signed link: 403 for a missing, altered or expired signature,
    and for an authenticated requester who is not a member of the room. Never rendered by the browser as a
    page: nosniff, a sandboxing CSP, and `attachment` disposition for everything but images."""

    permission_classes = [AllowAny]

    @extend_schema(
        parameters=[OpenApiParameter("sig", str, required=True, description="The link's signature.")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, attachment_id: int, variant: str) -> HttpResponse:
        attachment = attachments.attachment_for_download(
            attachment_id=attachment_id, variant=variant, token=request.query_params.get("sig"), user=request.user
        )
        data = attachments.read_file(attachment, variant)
        return attachments.file_response(attachment, variant, data)

from django.urls import path

from . import api

urlpatterns = [
    path("rooms/<int:room_id>/messages", api.RoomMessagesView.as_view(), name="room-messages"),
    path("rooms/<int:room_id>/messages/<int:message_id>", api.MessageView.as_view(), name="room-message"),
    path(
        "rooms/<int:room_id>/messages/<int:message_id>/reactions/<str:emoji>",
        api.ReactionView.as_view(),
        name="message-reaction",
    ),
    path("rooms/<int:room_id>/read", api.RoomReadView.as_view(), name="room-read"),
    path("rooms/<int:room_id>/attachments", api.RoomAttachmentsView.as_view(), name="room-attachments"),
    path(
        "attachments/<int:attachment_id>/<str:variant>", api.AttachmentDownloadView.as_view(), name="attachment-download"
    ),
    path("search/messages", api.MessageSearchView.as_view(), name="message-search"),
    path("me/rooms", api.MyRoomsView.as_view(), name="my-rooms"),
]

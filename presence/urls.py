from django.urls import path

from . import api

urlpatterns = [
    path("rooms/<int:room_id>/members", api.RoomMembersView.as_view(), name="room-members"),
]

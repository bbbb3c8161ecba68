"""Rooms REST paths, mounted under /api/ (no trailing slashes, as in the contract)."""

from django.urls import path

from . import api

urlpatterns = [
    path("rooms", api.RoomListView.as_view(), name="room-list-api"),
    path("rooms/<int:room_id>", api.RoomDetailView.as_view(), name="room-detail-api"),
    path("rooms/<int:room_id>/join", api.RoomJoinView.as_view(), name="room-join-api"),
    path("rooms/<int:room_id>/leave", api.RoomLeaveView.as_view(), name="room-leave-api"),
]

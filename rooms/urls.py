"""Rooms REST paths, mounted under /api/ (no trailing slashes, as in the contract)."""

from django.urls import path

from . import api

urlpatterns = [
    path("rooms", api.RoomListView.as_view(), name="room-list-api"),
    path("rooms/<int:room_id>", api.RoomDetailView.as_view(), name="room-detail-api"),
    path("rooms/<int:room_id>/join", api.RoomJoinView.as_view(), name="room-join-api"),
    path("rooms/<int:room_id>/leave", api.RoomLeaveView.as_view(), name="room-leave-api"),
    path("rooms/<int:room_id>/members/<int:user_id>/role", api.MemberRoleView.as_view(), name="room-member-role"),
    path("rooms/<int:room_id>/members/<int:user_id>/kick", api.MemberKickView.as_view(), name="room-member-kick"),
    path("rooms/<int:room_id>/members/<int:user_id>/ban", api.MemberBanView.as_view(), name="room-member-ban"),
    path("rooms/<int:room_id>/bans", api.RoomBansView.as_view(), name="room-bans"),
    path("rooms/<int:room_id>/owner", api.RoomOwnerView.as_view(), name="room-owner"),
    path("rooms/<int:room_id>/invites", api.RoomInvitesView.as_view(), name="room-invites"),
    path("rooms/<int:room_id>/invites/by-id/<int:invite_id>", api.RoomInviteByIdView.as_view(), name="room-invite-by-id"),
    path("rooms/<int:room_id>/invites/<str:token>", api.RoomInviteView.as_view(), name="room-invite"),
    path("invites/<str:token>/accept", api.InviteAcceptView.as_view(), name="invite-accept"),
    path("dms", api.DmsView.as_view(), name="dms"),
    path("me/blocks", api.BlocksView.as_view(), name="my-blocks"),
    path("me/blocks/<int:user_id>", api.BlockView.as_view(), name="my-block"),
]

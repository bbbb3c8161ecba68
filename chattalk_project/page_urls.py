"""Server-rendered pages (templates/, static/), mounted at the root by chattalk_project.urls."""

from django.urls import include, path

from . import pages

urlpatterns = [
    path("", pages.home, name="home"),
    path("signup/", pages.signup, name="signup"),
    path("login/", pages.login_page, name="login"),
    path("logout/", pages.logout_page, name="logout"),
    path("rooms/", pages.room_list, name="room-list"),
    path("rooms/new/", pages.room_create, name="room-create"),
    path("rooms/<int:room_id>/", pages.room_detail, name="room-detail"),
    path("rooms/<int:room_id>/join/", pages.room_join, name="room-join"),
    path("rooms/<int:room_id>/leave/", pages.room_leave, name="room-leave"),
    path("search/", pages.message_search, name="message-search"),
    path("invites/<str:token>/", pages.invite_page, name="invite"),
    # Django's set_language view: the language switch on every page posts here.
    path("i18n/", include("django.conf.urls.i18n")),
]

"""/api/auth/ (mounted by chattalk_project/urls.py)."""

from django.urls import path

from . import api
from .password_pool import takes_password_turn

app_name = "accounts"

urlpatterns = [
    path("signup", takes_password_turn(api.SignupView.as_view()), name="signup"),
    path("login", takes_password_turn(api.LoginView.as_view()), name="login"),
    path("refresh", api.RefreshView.as_view(), name="refresh"),
    path("logout", api.LogoutView.as_view(), name="logout"),
    path("password", takes_password_turn(api.PasswordChangeView.as_view()), name="password"),
    path("me", api.MeView.as_view(), name="me"),
]

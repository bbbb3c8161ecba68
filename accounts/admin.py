"""Operators manage users here: search, the staff flag, and deactivation that really locks a user out.

Deactivating (the action, or unticking "active" in the form) goes through accounts.services.deactivate_user,
so it also revokes the user's tokens and closes their live sockets on every process. Names typed in the
forms obey signup's rule (accounts.services.look_alike_name_errors); the password form is Django's, and a
new password ends what the user held (accounts.models.User.save).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import User
from .services import deactivate_user, look_alike_name_errors


class _RefusesLookAlikeNames(forms.ModelForm):
    """A username or nickname typed here obeys the rule of signup: it must not look like another user's."""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        changed = set(self.changed_data)  # an old clash stays editable: only new names are judged
        errors = look_alike_name_errors(
            username=data.get("username") if "username" in changed else None,
            nickname=data.get("nickname") if "nickname" in changed else None,
            user_id=self.instance.pk,
        )
        for field, messages_ in errors.items():
            self.add_error(field, messages_)
        return data


class ChatTalkUserChangeForm(_RefusesLookAlikeNames, UserChangeForm):
    pass


class ChatTalkUserCreationForm(_RefusesLookAlikeNames, AdminUserCreationForm):
    pass


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = ChatTalkUserChangeForm
    add_form = ChatTalkUserCreationForm
    list_display = ("username", "nickname", "email", "is_staff", "is_active", "date_joined", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("username", "nickname", "email")
    ordering = ("username",)
    fieldsets = (
        *DjangoUserAdmin.fieldsets[:1],
        ("Profile", {"fields": ("nickname", "first_name", "last_name", "email")}),
        *DjangoUserAdmin.fieldsets[2:],
    )
    actions = ["deactivate_users", "grant_staff", "revoke_staff"]

    @admin.action(description="Deactivate (revoke tokens, close sockets)", permissions=["change"])
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = list(queryset.exclude(pk=request.user.pk))
        if len(users) < queryset.count():
            self.message_user(request, "You cannot deactivate yourself.", messages.WARNING)
        for user in users:
            deactivate_user(user=user, actor=request.user)  # type: ignore[arg-type]
        self.message_user(request, f"Deactivated {len(users)} user(s); their tokens and sockets are revoked.")

    @admin.action(description="Grant staff status", permissions=["change"])
    def grant_staff(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        updated = queryset.update(is_staff=True)
        self.message_user(request, f"{updated} user(s) are now staff.")

    @admin.action(description="Remove staff status", permissions=["change"])
    def revoke_staff(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        updated = queryset.exclude(pk=request.user.pk).update(is_staff=False)
        self.message_user(request, f"{updated} user(s) are no longer staff.")

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        deactivating = change and "is_active" in form.changed_data and not obj.is_active
        if deactivating:
            obj.is_active = True  # the other edits are saved as usual; deactivation is the service's job
        super().save_model(request, obj, form, change)
        if deactivating:
            deactivate_user(user=obj, actor=request.user)  # type: ignore[arg-type]

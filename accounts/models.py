from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypedDict

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import hashers
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractUser
from django.db import models, router, transaction
from django.utils.crypto import salted_hmac

from .names import SKELETON_MAX_LENGTH, name_skeleton
from .password_pool import run_hash

SESSION_AUTH_HASH_SALT = "accounts.User.get_session_auth_hash"


class PublicUser(TypedDict):
    """The embedded User of the wire contract, the same on every edge (REST, GraphQL, frames, Kafka)."""

    id: int
    username: str
    nickname: str


class User(AbstractUser):
    """ChatTalk's user. Staff and superuser flags are only ever set by operators, never by signup."""

    nickname = models.CharField(max_length=50, blank=True)
    # Moves by one on every password change, whatever the path (see `save`). Tokens carry the generation
    # they were issued under (accounts.tokens.GENERATION_CLAIM); one from an older generation is refused.
    # Kept in the user row, which every token check reads anyway: exact, and no cache entry to lose.
    credential_generation = models.PositiveIntegerField(default=0, editable=False)
    # Set, in the revoking transaction, by everything that revokes a credential of the user (logout,
    # deactivation, a password change, a reused refresh token): the change marker that lets every process's
    # periodic socket re-check read only the users whose credentials changed (realtime.watch).
    credentials_changed_at = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)
    # The names' skeletons (accounts/names.py), kept by `save`: a name is refused when its skeleton equals
    # one of another user's (accounts.services.look_alike_name_errors). "" for an empty nickname.
    username_skeleton = models.CharField(max_length=SKELETON_MAX_LENGTH, blank=True, editable=False, db_index=True)
    nickname_skeleton = models.CharField(max_length=SKELETON_MAX_LENGTH, blank=True, editable=False, db_index=True)

    # True while check_password runs: a save then is Django's rehash of the same password with the
    # preferred hasher (login after a hasher or parameter change), not a password change.
    _checking_password = False

    @property
    def display_name(self) -> str:
        return self.nickname or self.username

    def as_public_dict(self) -> PublicUser:
        """The embedded User of the wire contract: {id, username, nickname}."""
        return {"id": self.pk, "username": self.username, "nickname": self.nickname}

    def get_session_auth_hash(self) -> str:
        """What a session remembers of its user's credentials: an HMAC of the credential generation, where
        Django's default is an HMAC of the stored password hash. The rehash on login (a new hasher or new
        parameters, same password) must not end the user's other sessions; a password change, which moves
        the generation, must."""
        return self._session_auth_hash(secret=None)

    def get_session_auth_fallback_hash(self) -> Iterator[str]:
        """Hashes Django still accepts (and then replaces by the current one): those made with a rotated-out
        SECRET_KEY, and, until the first password change, Django's default hash of sessions started before
        this one existed (while it still matches the stored password hash)."""
        for secret in settings.SECRET_KEY_FALLBACKS:
            yield self._session_auth_hash(secret=secret)
        if self.credential_generation == 0:
            yield super().get_session_auth_hash()
            yield from super().get_session_auth_fallback_hash()

    def _session_auth_hash(self, secret: str | None) -> str:
        basis = f"{self.pk}:{self.credential_generation}"
        return salted_hmac(SESSION_AUTH_HASH_SALT, basis, secret=secret, algorithm="sha256").hexdigest()

    def check_password(self, raw_password: str) -> bool:
        """Django's check, with the verification and, when the stored hash is not the preferred hasher's,
        the upgraded hash made in one job of the password pool (accounts/password_pool.py): a login's rehash
        must not queue a second time, behind every login that arrived after it. The upgraded hash is saved
        here, on the caller's thread, as Django's own setter does; that save is not a password change."""
        self._checking_password = True
        try:
            correct, upgraded = run_hash(_verify_and_rehash, raw_password, self.password)
            if upgraded is not None:
                self.password = upgraded
                self._password = None
                self.save(update_fields=["password"])
            return correct
        finally:
            self._checking_password = False

    async def acheck_password(self, raw_password: str) -> bool:
        """Off the event loop (Django's async check hashes on the calling thread)."""
        return await sync_to_async(self.check_password)(raw_password)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Every path that stores a new password hash for an existing user comes through here (the admin's
        password form, `set_password` + save anywhere, `manage.py changepassword`, the REST password
        change): the stored hash is compared with the new one under a row lock, and a change moves the
        credential generation in the same UPDATE and revokes what the user holds
        (accounts.services.revoke_after_password_change), all in one transaction."""
        self._keep_name_skeletons(kwargs)
        update_fields = kwargs.get("update_fields")
        if (
            self._state.adding
            or self._checking_password
            or (update_fields is not None and "password" not in update_fields)
        ):
            super().save(*args, **kwargs)
            return
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):
            stored = (
                type(self)
                ._base_manager.using(using)
                .select_for_update()
                .filter(pk=self.pk)
                .values_list("password", "credential_generation")
                .first()
            )
            changed = stored is not None and stored[0] != self.password
            if changed:
                self.credential_generation = stored[1] + 1
                if update_fields is not None:
                    kwargs["update_fields"] = {*update_fields, "credential_generation"}
            super().save(*args, **kwargs)
            if changed:
                from .services import revoke_after_password_change  # services imports this module

                revoke_after_password_change(self)

    def _keep_name_skeletons(self, save_kwargs: dict[str, Any]) -> None:
        self.username_skeleton = name_skeleton(self.username or "")
        self.nickname_skeleton = name_skeleton(self.nickname or "")
        update_fields = save_kwargs.get("update_fields")
        if update_fields is not None and {"username", "nickname"} & set(update_fields):
            save_kwargs["update_fields"] = {*update_fields, "username_skeleton", "nickname_skeleton"}


def _verify_and_rehash(raw_password: str, encoded: str) -> tuple[bool, str | None]:
    """(whether the password is correct, its hash with the preferred hasher if the stored one must be
    replaced). Django's check_password, with a setter that only computes the new hash."""
    upgraded: str | None = None

    def setter(raw: str) -> None:
        nonlocal upgraded
        upgraded = make_password(raw)

    return hashers.check_password(raw_password, encoded, setter), upgraded

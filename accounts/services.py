"""The accounts domain: sign up, log in, refresh, log out, deactivate, change a password (and end what a
password change ends), and check an access token.

Every edge calls these: the REST views (accounts/api.py), the Bearer authentication of REST and GraphQL
(accounts/authentication.py), the WebSocket middleware (accounts/ws_auth.py) and the admin. So a token is
judged the same way everywhere, and a revocation made by one edge is seen by all of them.

Account changes emit no outbox events: the contract's Kafka topics are about rooms, messages, memberships
and presence, and none of them carries users.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from django.contrib import auth
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from rest_framework_simplejwt.exceptions import ExpiredTokenError, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from core.domain import DomainError, InvalidInput
from realtime.publish import publish_user_revoked

from . import tokens
from .models import User
from .names import name_skeleton

logger = logging.getLogger(__name__)

USERNAME_MAX_LENGTH = 150
PASSWORD_MAX_LENGTH = 256  # far above any real password; bounds the work of hashing hostile input
EMAIL_MAX_LENGTH = 254
NICKNAME_MAX_LENGTH = 50
TOKEN_MAX_LENGTH = 4096
# Fields a signup body may never set. Refused with 400 rather than ignored, so that a client asking for a
# role learns at once that it cannot have one.
PRIVILEGED_SIGNUP_FIELDS = frozenset(
    {"is_staff", "is_superuser", "role", "is_active", "groups", "user_permissions", "permissions", "id", "pk"}
)


# --- refusals -----------------------------------------------------------------------------------------
class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    http_status = 401
    default_detail = "Wrong username or password."


class NotAuthenticated(DomainError):
    """A presented token (or none) that does not authenticate anybody."""

    code = "not_authenticated"
    http_status = 401
    default_detail = "Authentication is required."


class TokenInvalid(NotAuthenticated):
    code = "token_invalid"
    default_detail = "The token is not valid."


class TokenExpired(NotAuthenticated):
    code = "token_expired"
    default_detail = "The token has expired."


class TokenRevoked(NotAuthenticated):
    code = "token_revoked"
    default_detail = "The token has been revoked."


class TokenReused(NotAuthenticated):
    code = "token_reused"
    default_detail = "This refresh token was already used; log in again."


class UsernameTaken(DomainError):
    code = "username_taken"
    http_status = 409
    default_detail = "This username is taken."


class PrivilegedFieldRefused(InvalidInput):
    code = "privileged_field"
    default_detail = "Roles and permissions cannot be chosen at signup."


class RefreshInvalid(InvalidInput):
    """Logout with a refresh token that is not the caller's valid refresh token."""

    code = "token_invalid"
    default_detail = "The refresh token is not valid."


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


@dataclass(frozen=True)
class LoginResult:
    user: User
    tokens: TokenPair


# --- input ----------------------------------------------------------------------------------------------
def _string(value: Any, *, required: bool, max_length: int, errors: dict[str, list[str]], name: str) -> str:
    if value is None or value == "":
        if required:
            errors[name] = ["This field is required."]
        return ""
    if not isinstance(value, str):
        errors[name] = ["Must be a string."]
        return ""
    if len(value) > max_length:
        errors[name] = [f"At most {max_length} characters."]
        return ""
    return value


def look_alike_name_errors(*, username: str | None, nickname: str | None, user_id: int | None) -> dict[str, list[str]]:
    """Field errors for a username or nickname that looks like another user's username or nickname (equal
    skeletons, accounts/names.py), or that shows nothing at all. A user's own names may look alike.
    Every path that sets a name asks this: signup (REST and pages) and the admin's user forms."""
    errors: dict[str, list[str]] = {}
    for field, name in (("username", username), ("nickname", nickname)):
        if not name:
            continue
        skeleton = name_skeleton(name)
        if not skeleton:
            errors[field] = ["Must contain a visible character."]
            continue
        others = User.objects.filter(Q(username_skeleton=skeleton) | Q(nickname_skeleton=skeleton))
        if user_id is not None:
            others = others.exclude(pk=user_id)
        if others.exists():
            errors[field] = ["Too much like the name of another user."]
    return errors


def refuse_privileged_fields(body: Mapping[str, Any]) -> None:
    asked = sorted(PRIVILEGED_SIGNUP_FIELDS.intersection(body))
    if asked:
        raise PrivilegedFieldRefused(fields={name: ["Cannot be set at signup."] for name in asked})


# --- signup and login -----------------------------------------------------------------------------------
def signup(*, username: Any, password: Any, email: Any = None, nickname: Any = None) -> User:
    """Create an ordinary user: never staff, never superuser, whatever the caller wished."""
    errors: dict[str, list[str]] = {}
    username = _string(username, required=True, max_length=USERNAME_MAX_LENGTH, errors=errors, name="username")
    password = _string(password, required=True, max_length=PASSWORD_MAX_LENGTH, errors=errors, name="password")
    email = _string(email, required=False, max_length=EMAIL_MAX_LENGTH, errors=errors, name="email").strip()
    nickname = _string(nickname, required=False, max_length=NICKNAME_MAX_LENGTH, errors=errors, name="nickname").strip()
    if username:
        try:
            UnicodeUsernameValidator()(username)
        except ValidationError as exc:
            errors["username"] = list(exc.messages)
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            errors["email"] = list(exc.messages)
    if password and "username" not in errors:
        try:
            validate_password(password, user=User(username=username, email=email, nickname=nickname))
        except ValidationError as exc:
            errors["password"] = list(exc.messages)
    if errors:
        raise InvalidInput(fields=errors)
    # Case-insensitive, so that "Alice" cannot pass for "alice".
    if User.objects.filter(username__iexact=username).exists():
        raise UsernameTaken(fields={"username": ["A user with that username already exists."]})
    errors = look_alike_name_errors(username=username, nickname=nickname, user_id=None)
    if errors:
        raise InvalidInput(fields=errors)
    # Hashed before the transaction: the hash waits its turn on the password pool, and a transaction would
    # keep a pooled database connection for as long (accounts/password_pool.py).
    password_hash = make_password(password)
    try:
        with transaction.atomic():
            user = User(
                username=User.normalize_username(username),
                email=User.objects.normalize_email(email),
                nickname=nickname,
                is_staff=False,
                is_superuser=False,
                password=password_hash,
            )
            user.save()
            return user
    except IntegrityError:  # a concurrent signup of the same name won the race
        raise UsernameTaken(fields={"username": ["A user with that username already exists."]}) from None


def issue_tokens(user: User, family: str | None = None) -> TokenPair:
    """A new pair. The refresh token starts a family (a login) or continues one (a rotation); both tokens
    carry the family and the user's credential generation, so that either can be revoked by them.

    simplejwt's RefreshToken.for_user records the token as outstanding before any claim of ours could be
    added; this records it with them, so that a family's outstanding tokens can be found from the table.
    """
    refresh = RefreshToken()
    refresh[jwt_settings.USER_ID_CLAIM] = str(user.pk)
    refresh[tokens.GENERATION_CLAIM] = user.credential_generation
    refresh[tokens.FAMILY_CLAIM] = family or uuid.uuid4().hex
    OutstandingToken.objects.create(
        user=user,
        jti=refresh[jwt_settings.JTI_CLAIM],
        token=str(refresh),
        created_at=refresh.current_time,
        expires_at=datetime_from_epoch(refresh["exp"]),
    )
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def login(*, request: HttpRequest, username: Any, password: Any) -> LoginResult:
    """Check the password (costly by design: run it off the event loop), start the session, issue tokens.

    The session is what the server-rendered pages and session-cookie WebSockets use; the tokens are for
    the SPA, bots and load tools.
    """
    errors: dict[str, list[str]] = {}
    username = _string(username, required=True, max_length=USERNAME_MAX_LENGTH, errors=errors, name="username")
    password = _string(password, required=True, max_length=PASSWORD_MAX_LENGTH, errors=errors, name="password")
    if errors:
        raise InvalidInput(fields=errors)
    user = auth.authenticate(request, username=username, password=password)
    if user is None:  # wrong password, unknown user and inactive user look the same from outside
        raise InvalidCredentials()
    auth.login(request, user)
    return LoginResult(user=user, tokens=issue_tokens(user))


# --- tokens ---------------------------------------------------------------------------------------------
class _RefreshTokenUnderLock(RefreshToken):
    """simplejwt's refresh token minus its own blacklist check, which `refresh` does under a row lock."""

    def check_blacklist(self) -> None:
        return None


def _raw_token(raw: Any) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > TOKEN_MAX_LENGTH:
        raise TokenInvalid()
    return raw


def _decode_refresh(raw: Any) -> _RefreshTokenUnderLock:
    try:
        return _RefreshTokenUnderLock(_raw_token(raw))
    except ExpiredTokenError:
        raise TokenExpired() from None
    except TokenError:
        raise TokenInvalid() from None


def refresh(raw: Any) -> TokenPair:
    """Rotate: the presented refresh token is blacklisted and a new pair of the same family issued.

    The outstanding row is locked first, so two concurrent uses of one token cannot both succeed. A second
    use means the token was copied: one of its two holders is an attacker, and nobody can tell which, so
    the whole family is revoked (revoke_token_family) and the caller told `token_reused`.
    """
    if raw is None or raw == "":
        raise InvalidInput(fields={"refresh": ["This field is required."]})
    if not isinstance(raw, str):
        raise InvalidInput(fields={"refresh": ["Must be a string."]})
    old = _decode_refresh(raw)
    with transaction.atomic():
        outstanding = OutstandingToken.objects.select_for_update().filter(jti=old.get(jwt_settings.JTI_CLAIM)).first()
        if outstanding is None or outstanding.user_id is None:
            raise TokenInvalid()  # every refresh token we issue is recorded
        user = User.objects.filter(pk=outstanding.user_id, is_active=True).first()
        if user is None or not tokens.generation_is_current(
            old.get(tokens.GENERATION_CLAIM), user.credential_generation
        ):
            raise TokenRevoked()  # deactivated, or the password changed: all of it was revoked already
        _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
        if created:
            return issue_tokens(user, family=old.get(tokens.FAMILY_CLAIM))
    # A reuse. Outside the transaction above, which a refusal raised inside would roll back.
    revoke_token_family(user_id=outstanding.user_id, family=old.get(tokens.FAMILY_CLAIM))
    raise TokenReused()


def revoke_token_family(*, user_id: int, family: str | None) -> None:
    """Blacklist every outstanding refresh token of the family and refuse its access tokens; close the
    family's sockets (the periodic re-check of each process sees the family's denylist entry).

    A refresh token from before families existed names none: then every token of the user is revoked, as
    deactivation does (the safe choice when the family cannot be told apart).
    """
    if not family:
        with transaction.atomic():
            tokens.blacklist_outstanding_refresh_tokens(user_id)
            tokens.revoke_all_tokens_issued_before(user_id, time.time())
            _close_sockets(user_id, None)
        logger.warning("reused refresh token without a family: every token of user %s revoked", user_id)
        return
    # Set first: from this instant no access token of the family passes, even while the blacklist is written.
    tokens.revoke_family_access_tokens(family)
    with transaction.atomic():
        live = OutstandingToken.objects.filter(
            user_id=user_id, blacklistedtoken__isnull=True, expires_at__gt=timezone.now()
        )
        members = [row for row in live if _family_of(row.token) == family]
        BlacklistedToken.objects.bulk_create([BlacklistedToken(token=row) for row in members], ignore_conflicts=True)
        tokens.mark_credentials_changed(user_id)  # no event names a family: each process's re-check closes them
    logger.warning("reused refresh token: family of user %s revoked (%d outstanding)", user_id, len(members))


def _family_of(stored_token: str) -> str | None:
    """The family claim of a refresh token as recorded at issue (our own table: no signature check needed)."""
    try:
        payload = jwt.decode(stored_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    family = payload.get(tokens.FAMILY_CLAIM)
    return family if isinstance(family, str) else None


def authenticate_access_token(raw: Any) -> tuple[User, AccessToken]:
    """The one check of an access token, for REST, GraphQL and WebSocket: signature, expiry, type, the
    user being active, and none of logout (jti denylist), deactivation (user cutoff), a password change
    (credential generation) or a reused refresh token (family denylist) having revoked it."""
    try:
        token = AccessToken(_raw_token(raw))
    except ExpiredTokenError:
        raise TokenExpired() from None
    except TokenError:
        raise TokenInvalid() from None
    try:
        user = User.objects.filter(pk=int(token.get(jwt_settings.USER_ID_CLAIM))).first()
    except (TypeError, ValueError):
        raise TokenInvalid() from None
    if user is None:
        raise TokenInvalid()
    if (
        not user.is_active
        or not tokens.generation_is_current(token.get(tokens.GENERATION_CLAIM), user.credential_generation)
        or tokens.access_token_is_revoked(user.pk, token.get("jti"), token.get("iat"), token.get(tokens.FAMILY_CLAIM))
    ):
        raise TokenRevoked()
    return user, token


# --- logout and deactivation ----------------------------------------------------------------------------
def _close_sockets(user_id: int, socket_id: str | None) -> None:
    """Inside a revoking transaction: close the user's sockets (all, or those of one access token or session)
    on every process. The event closes them at once after commit; the change marker, committed with the
    revocation, lets every process's periodic re-check find them within its period if the event is lost."""
    tokens.mark_credentials_changed(user_id)
    publish_user_revoked(user_id, socket_id)  # after commit: those sockets close (4401)


def _blacklist_own_refresh(user: User, raw: Any) -> None:
    try:
        old = _decode_refresh(raw)
    except TokenExpired:
        return  # dead already: nothing left to revoke
    except TokenInvalid:
        raise RefreshInvalid(fields={"refresh": ["Not a valid refresh token."]}) from None
    outstanding = OutstandingToken.objects.filter(jti=old.get(jwt_settings.JTI_CLAIM)).first()
    if outstanding is None or outstanding.user_id != user.pk:
        raise RefreshInvalid(fields={"refresh": ["Not a refresh token of this user."]})
    BlacklistedToken.objects.get_or_create(token=outstanding)  # already blacklisted: logout stays idempotent


def logout(*, request: HttpRequest, user: User, access: Mapping[str, Any] | None, refresh_token: Any) -> None:
    """Revoke what this client holds: the refresh token, the access token used, the session; and close
    the sockets opened with that access token or that session, on every process.

    `access` is the payload of the access token that authenticated the call (None for a session call).
    """
    session_socket = tokens.session_socket_id(request.session.session_key) if hasattr(request, "session") else None
    with transaction.atomic():
        if refresh_token not in (None, ""):
            _blacklist_own_refresh(user, refresh_token)
        jti = access.get("jti") if access is not None else None
        if jti:
            tokens.revoke_access_jti(str(jti), float(access.get("exp") or time.time()))  # type: ignore[union-attr]
        if hasattr(request, "session"):
            auth.logout(request)
        for socket_id in (jti, session_socket):
            if socket_id:
                _close_sockets(user.pk, str(socket_id))


def deactivate_user(*, user: User | int, actor: User | None = None) -> None:
    """Deactivate a user and revoke everything they hold: refresh tokens (blacklisted), access tokens (a
    cutoff: every one issued until now is refused), sessions (refused for an inactive user), and every live
    socket on every process (closed with 4401). Idempotent."""
    user_id = user if isinstance(user, int) else int(user.pk)
    with transaction.atomic():
        User.objects.filter(pk=user_id).update(is_active=False)
        tokens.blacklist_outstanding_refresh_tokens(user_id)
        # Set at once, not on commit: no window in which an old access token still passes.
        tokens.revoke_all_tokens_issued_before(user_id, time.time())
        _close_sockets(user_id, None)
    logger.info("user %s deactivated by %s", user_id, getattr(actor, "pk", None) or "system")
    if not isinstance(user, int):
        user.is_active = False


# --- password change ------------------------------------------------------------------------------------
def revoke_after_password_change(user: User) -> None:
    """What a new password ends, whoever set it. Called by User.save inside the transaction that stored the
    new hash and moved the credential generation (which alone refuses every token issued before: REST,
    GraphQL, refresh, new sockets). Here: every refresh token is blacklisted too, and after commit every
    socket of the user is closed on every process. Other browser sessions fail Django's session hash check
    from now on; the periodic socket re-check catches both kinds of socket if the close event is lost."""
    user_id = int(user.pk)
    tokens.blacklist_outstanding_refresh_tokens(user_id)
    _close_sockets(user_id, None)
    logger.info("password of user %s changed: tokens, sessions and sockets revoked", user_id)


def change_password(*, request: HttpRequest, user: User, old_password: Any, new_password: Any) -> TokenPair:
    """The caller changes their own password: everything they held ends (revoke_after_password_change),
    and they get a fresh token pair; the browser session making the call, if any, stays logged in."""
    errors: dict[str, list[str]] = {}
    old = _string(old_password, required=True, max_length=PASSWORD_MAX_LENGTH, errors=errors, name="old_password")
    new = _string(new_password, required=True, max_length=PASSWORD_MAX_LENGTH, errors=errors, name="new_password")
    if errors:
        raise InvalidInput(fields=errors)
    if not user.check_password(old):
        raise InvalidInput(fields={"old_password": ["The current password is not correct."]})
    try:
        validate_password(new, user=user)
    except ValidationError as exc:
        raise InvalidInput(fields={"new_password": list(exc.messages)}) from None
    user.set_password(new)  # hashed before the transaction, as in signup
    with transaction.atomic():
        user.save(update_fields=["password"])
        pair = issue_tokens(user)
    session = getattr(request, "session", None)
    if session is not None and session.get(auth.SESSION_KEY) == str(user.pk):
        auth.update_session_auth_hash(request, user)  # the browser making the call stays logged in
    return pair

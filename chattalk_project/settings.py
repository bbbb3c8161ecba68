"""ChatTalk settings: one module, everything from the environment, embedded defaults that need no server.

Each real service is switched on by its variable alone:
DATABASE_URL (PostgreSQL), REDIS_URL (channel layer, cache, denylist, rate limits),
KAFKA_BOOTSTRAP_SERVERS (the outbox relay), MONGODB_URI (presence). Without them ChatTalk runs on SQLite,
the in-memory channel layer, local-memory cache, ORM presence and an outbox with no relay.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for item in env_list(name):
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"{name} must list IP addresses or networks (CIDR, host bits zero), got {item!r}: {exc}"
            ) from exc
    return networks


# --- Core ---------------------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", True)
_DEV_SECRET_KEY = "chattalk-insecure-development-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = _DEV_SECRET_KEY
USING_DEV_SECRET_KEY = SECRET_KEY == _DEV_SECRET_KEY

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_ALLOW_CREDENTIALS = True
# CORS headers only where the SPA calls: the REST API and GraphQL (never the pages or the admin).
CORS_URLS_REGEX = r"^/(api/|graphql)"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc as static files: the docs work offline
    "graphene_django",
    "channels",
    "core",
    "realtime",
    "chattalk_project",
    "accounts",
    "rooms",
    "messaging",
    "presence",
    "events",
    "bench",
]

MIDDLEWARE = [
    "core.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "chattalk_project.csp.ContentSecurityPolicyMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chattalk_project.urls"
ASGI_APPLICATION = "chattalk_project.asgi.application"
WSGI_APPLICATION = None
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
# PostgreSQL connections come from a pool per process (psycopg_pool): a burst of requests (a join stampede,
# a login storm) waits up to DATABASE_POOL_TIMEOUT for a connection instead of failing with "too many
# clients", and N processes never hold more than N x DATABASE_POOL_MAX connections. Threads return their
# connection after each request or socket call, so a small pool serves thousands of sockets.
DATABASE_POOL_MAX = env_int("DATABASE_POOL_MAX", 16)


def _database(url: str) -> dict[str, Any]:
    """A DATABASES entry for a URL, with the connection pool (PostgreSQL) or the persistent connection."""
    db = dj_database_url.parse(url)
    if db["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_MAX > 0:
        db["CONN_MAX_AGE"] = 0  # the pool keeps the connections; Django must not
        db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN", 2),
            "max_size": DATABASE_POOL_MAX,
            "timeout": env_int("DATABASE_POOL_TIMEOUT", 5),
            "max_idle": 300,
        }
    else:
        db["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
        db["CONN_HEALTH_CHECKS"] = True
    return db


if DATABASE_URL:
    _default_db = _database(DATABASE_URL)
else:
    _default_db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(BASE_DIR / "db.sqlite3")}
if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock at BEGIN, so concurrent writers queue instead of failing
    # with "database is locked" on upgrade; WAL lets readers run beside the writer.
    _default_db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# PgBouncer in transaction mode (DATABASE_TRANSACTION_POOLING=1) hands each transaction whatever server
# connection is free, so nothing may outlive a transaction on the server: no server-side cursors (Django's
# .iterator() would DECLARE a cursor WITH HOLD that the next transaction's connection does not have) and no
# prepared statements (psycopg prepares a query after 5 uses; PgBouncer 1.18 does not carry them over). The
# app takes no session advisory locks and does not LISTEN; the relay does take one, so it connects through a
# session-mode pool (scripts/netcluster gives it one).
DATABASE_TRANSACTION_POOLING = env_bool("DATABASE_TRANSACTION_POOLING", False)
if DATABASE_TRANSACTION_POOLING and _default_db["ENGINE"] == "django.db.backends.postgresql":
    _default_db["DISABLE_SERVER_SIDE_CURSORS"] = True
    _default_db.setdefault("OPTIONS", {})["prepare_threshold"] = None
_test_db_name = env_str("TEST_DB_NAME")
if _default_db["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: the tests' real server processes must open the same test database.
    _default_db["TEST"] = {"NAME": str(BASE_DIR / "var" / f"{_test_db_name or 'test_chattalk'}.sqlite3")}
elif _test_db_name:
    _default_db["TEST"] = {"NAME": _test_db_name}
DATABASES = {"default": _default_db}
# A PostgreSQL streaming replica of the primary. Only reads that can take its lag go there (history pages,
# a socket's resume replay), each topped up from the primary (core/replica.py, messaging.services); unset,
# everything reads the primary. Under test the alias mirrors the primary (TEST MIRROR): pytest-django
# creates the test database on the primary only, and the replica tests point the alias at the replica.
DATABASE_REPLICA_URL = env_str("DATABASE_REPLICA_URL")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = {**_database(DATABASE_REPLICA_URL), "TEST": {"MIRROR": "default"}}
DATABASE_ROUTERS = ["core.replica.PrimaryWritesRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and cache ------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
CHANNEL_LAYER_PREFIX = env_str("CHANNEL_LAYER_PREFIX", "chattalk")
# The per-process room hub is the only reader of the layer, so a handful of connections serve thousands of
# sockets; the pool is still sized generously so that bursts of group_add/group_send never hit the limit.
REDIS_POOL_SIZE = env_int("REDIS_POOL_SIZE", 1000)
# One hub channel per process carries every room's traffic: capacity must cover a burst, not one socket.
CHANNEL_CAPACITY = env_int("CHANNEL_CAPACITY", 100_000)
# Redis Sentinel: REDIS_SENTINELS="host:port,host:port,..." and REDIS_URL=redis://MASTER_NAME/DB, where the URL's
# host is the name the sentinels monitor (django-redis' convention) and its path the database. The channel
# layer, the cache (denylist, rate limits) and /readyz then ask the sentinels for the primary, and follow a
# failover: a connection that fails, or that finds its server turned replica, asks again.
REDIS_SENTINELS: list[tuple[str, int]] = [
    (address.rpartition(":")[0], int(address.rpartition(":")[2])) for address in env_list("REDIS_SENTINELS")
]
REDIS_SOCKET_TIMEOUT = 10  # above channels-redis' 5 s blocking read (BZPOPMIN), see below


def redis_sentinel_target(url: str) -> tuple[str, int, str | None]:
    """(master name, db, password) of a REDIS_URL used with REDIS_SENTINELS."""
    parts = urlsplit(url)
    return parts.hostname or "", int((parts.path or "/0").strip("/") or 0), parts.password


if REDIS_URL and REDIS_SENTINELS:
    _master_name, _redis_db, _redis_password = redis_sentinel_target(REDIS_URL)
    _layer_host: dict[str, object] = {
        "master_name": _master_name,
        "sentinels": REDIS_SENTINELS,
        "sentinel_kwargs": {"socket_timeout": 2, "socket_connect_timeout": 2},
        "db": _redis_db,
        "password": _redis_password,
        "max_connections": REDIS_POOL_SIZE,
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": 2,
    }
    _cache_options: dict[str, object] = {
        "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
        # The default client, not django-redis' SentinelClient: that one reads from replicas, and a denylist
        # read from a lagging replica would let a token through just after its logout.
        "SENTINELS": REDIS_SENTINELS,
        "SENTINEL_KWARGS": {"socket_timeout": 2, "socket_connect_timeout": 2},
        "SOCKET_CONNECT_TIMEOUT": 2,
        "SOCKET_TIMEOUT": 5,
        "CONNECTION_POOL_KWARGS": {"max_connections": REDIS_POOL_SIZE},
    }
else:
    # socket_timeout above channels-redis' 5 s blocking read (BZPOPMIN): redis-py's default of 5 s
    # races it, and an idle hub's receive then fails every few seconds (see test_faults.py).
    _layer_host = {"address": REDIS_URL, "max_connections": REDIS_POOL_SIZE, "socket_timeout": REDIS_SOCKET_TIMEOUT}
    _cache_options = {"CONNECTION_POOL_KWARGS": {"max_connections": REDIS_POOL_SIZE}}
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [_layer_host],
                "prefix": CHANNEL_LAYER_PREFIX,
                "capacity": CHANNEL_CAPACITY,
                "expiry": 60,
                "group_expiry": 86400,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CHANNEL_LAYER_PREFIX,
            "OPTIONS": _cache_options,
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY, "expiry": 60, "group_expiry": 86400},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "chattalk"}}

# --- Kafka (events relay) -----------------------------------------------------------------------------
KAFKA_BOOTSTRAP_SERVERS = env_str("KAFKA_BOOTSTRAP_SERVERS")
KAFKA_TOPIC_PREFIX = env_str("KAFKA_TOPIC_PREFIX", "")
KAFKA_TOPIC_PARTITIONS = env_int("KAFKA_TOPIC_PARTITIONS", 6)
EVENTS_RETENTION = timedelta(hours=env_int("EVENTS_RETENTION_HOURS", 72))
# Extra librdkafka settings as a JSON object, e.g. {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", ...}.
KAFKA_CLIENT_CONFIG = env_str("KAFKA_CLIENT_CONFIG")
EVENTS_RELAY_BATCH_SIZE = env_int("EVENTS_RELAY_BATCH_SIZE", 500)
EVENTS_RELAY_BACKOFF_MAX_SECONDS = env_int("EVENTS_RELAY_BACKOFF_MAX_SECONDS", 30)
# Relays in parallel: the outbox is cut into this many partitions (room id modulo the count), each leased by one
# relay for EVENTS_RELAY_LEASE_SECONDS and renewed every third of it (events.leases). Same value on every relay.
EVENTS_RELAY_PARTITIONS = env_int("EVENTS_RELAY_PARTITIONS", 16)
EVENTS_RELAY_LEASE_SECONDS = env_int("EVENTS_RELAY_LEASE_SECONDS", 10)
# Replication of the topics the relay creates; -1 is the broker's default.replication.factor.
KAFKA_TOPIC_REPLICATION = env_int("KAFKA_TOPIC_REPLICATION", -1)

# --- MongoDB (presence) -------------------------------------------------------------------------------
MONGODB_URI = env_str("MONGODB_URI")
PRESENCE_BACKEND = env_str("PRESENCE_BACKEND", "mongo" if MONGODB_URI else "orm")
PRESENCE_HEARTBEAT_SECONDS = env_int("PRESENCE_HEARTBEAT_SECONDS", 15)
PRESENCE_TIMEOUT_SECONDS = env_int("PRESENCE_TIMEOUT_SECONDS", 45)

# --- Auth ---------------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Argon2id with OWASP's parameters (accounts/hashers.py). The others only verify hashes stored before
# (Django's default was PBKDF2); each is replaced by an Argon2id hash at that user's next login.
# All of them hash on the password pool (accounts/password_pool.py).
PASSWORD_HASHERS = [
    "accounts.hashers.Argon2idPasswordHasher",
    "accounts.hashers.PBKDF2PasswordHasher",
    "accounts.hashers.PBKDF2SHA1PasswordHasher",
    "accounts.hashers.BCryptSHA256PasswordHasher",
    "accounts.hashers.ScryptPasswordHasher",
]
TESTING = "pytest" in sys.modules or env_bool("TESTING", False)
if TESTING and not env_bool("REAL_PASSWORD_HASHER", False):
    # Tests only: a real hash costs CPU by design (docs/BENCHMARKS.md), which would dominate the suite. The
    # real hashers are tested on a server with REAL_PASSWORD_HASHER=1 (accounts/tests/test_password_hashing.py).
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_ACCESS_SECONDS", 15 * 60)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_REFRESH_SECONDS", 14 * 24 * 3600)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "SIGNING_KEY": env_str("JWT_SIGNING_KEY") or SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
}
# HttpOnly cookie holding the refresh token (path /api/auth/), set by login and refresh; see docs/API.md.
AUTH_REFRESH_COOKIE = "chattalk_refresh"
# Threads that run password hashes (and nothing else) off the request threads and the event loop
# (accounts/password_pool.py). One core is left to the event loop, the other requests and the database:
# argon2-cffi releases the GIL, but a hash on every core (two 19 MiB memory-hard hashes at once on two
# cores) made the room lists of users already logged in 2-8x slower in a login storm for no more logins
# (docs/BENCHMARKS.md, "Login ramp"). They run at nice PASSWORD_HASH_NICE (Linux, per thread; 0 = normal
# priority). 0 workers hashes on the caller's thread: the default inside pytest, whose test transaction
# lives on one thread.
PASSWORD_HASH_WORKERS = env_int(
    "PASSWORD_HASH_WORKERS", 0 if "pytest" in sys.modules else max(1, (os.cpu_count() or 2) - 1)
)
PASSWORD_HASH_NICE = env_int("PASSWORD_HASH_NICE", 10)
# Login, signup and password-change requests that run at once (accounts.password_pool.takes_password_turn);
# the others wait for a turn on the event loop before Django (core.turns.TurnGate), holding no thread and
# no database connection, and leave the queue if their client goes away. Enough to keep every hash thread busy while others do their database work; few enough that
# users already logged in do not share the GIL and the connection pool with a whole storm (0: no limit).
PASSWORD_VIEW_CONCURRENCY = env_int("PASSWORD_VIEW_CONCURRENCY", 3 * PASSWORD_HASH_WORKERS)

# --- Proxies ------------------------------------------------------------------------------------------
# The one rule for forwarded client addresses: X-Forwarded-For is believed only on connections from these
# addresses or networks (comma-separated IPs/CIDRs, e.g. "10.0.0.5,10.1.0.0/16"); empty, the default, believes
# none, so a client cannot choose the address its login and signup limits are counted by. scripts/serve hands
# the list to uvicorn (--forwarded-allow-ips; --no-proxy-headers when empty), which puts the client's address
# in the ASGI scope before Django or Channels see it (the scope's scheme from X-Forwarded-Proto likewise).
# Parsed here so that a typo stops the server: uvicorn would keep an entry it cannot parse as a name that
# never matches, trusting nobody without a word.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
if env_str("TRUSTED_PROXY_COUNT"):
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT is gone: list the proxies' addresses in TRUSTED_PROXIES.")

# --- Rate limits --------------------------------------------------------------------------------------
RATE_LIMITS_ENABLED = env_str("RATE_LIMITS", "on").lower() not in {"off", "0", "false", "no"}
# Per user, on every path that writes (REST, GraphQL, the pages), counted in the shared cache: message
# sends (a burst, then a rate, as the socket's own per-socket limit), rooms created, and the other room
# writes (join, leave, read position, room update and delete).
SEND_MESSAGES_PER_SECOND = env_int("SEND_MESSAGES_PER_SECOND", 20)
SEND_MESSAGES_BURST = env_int("SEND_MESSAGES_BURST", 40)
SEARCH_PER_SECOND = env_int("SEARCH_PER_SECOND", 1)
SEARCH_BURST = env_int("SEARCH_BURST", 20)
ROOMS_CREATED_PER_HOUR = env_int("ROOMS_CREATED_PER_HOUR", 20)
ROOM_WRITES_PER_MINUTE = env_int("ROOM_WRITES_PER_MINUTE", 120)
# Invitations made, invitations accepted (a token is unguessable; this bounds the cost of trying), DMs opened.
INVITES_CREATED_PER_HOUR = env_int("INVITES_CREATED_PER_HOUR", 60)
INVITE_ACCEPTS_PER_MINUTE = env_int("INVITE_ACCEPTS_PER_MINUTE", 20)
DMS_OPENED_PER_HOUR = env_int("DMS_OPENED_PER_HOUR", 120)

# --- REST framework -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.RevocableJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParserRefusingDeepNesting"],
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "core.query_params.PageNumberPagination",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 20),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "login_ip": env_str("THROTTLE_LOGIN_IP", "30/min"),
        "login_username": env_str("THROTTLE_LOGIN_USERNAME", "10/min"),
        "signup_ip": env_str("THROTTLE_SIGNUP_IP", "20/hour"),
        "signup_username": env_str("THROTTLE_SIGNUP_USERNAME", "10/hour"),
        "password_change_user": env_str("THROTTLE_PASSWORD_CHANGE", "10/hour"),
    },
    # The client address for throttles is always REMOTE_ADDR: the server (scripts/serve) has already put there
    # the address X-Forwarded-For names when, and only when, the request came from one of TRUSTED_PROXIES.
    "NUM_PROXIES": 0,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "ChatTalk API",
    "DESCRIPTION": "REST API of ChatTalk; the binding contract is docs/API.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from our own static files (pinned drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "/favicon.ico",
    "REDOC_DIST": "SIDECAR",
}

GRAPHENE = {
    "SCHEMA": "chattalk_project.schema.schema",
    "MIDDLEWARE": [],
}
GRAPHQL_MAX_DEPTH = env_int("GRAPHQL_MAX_DEPTH", 10)
GRAPHQL_MAX_QUERY_BYTES = env_int("GRAPHQL_MAX_QUERY_BYTES", 20 * 1024)
# Cost: every field 1, times the items of the lists above it, each list charged at its real bound. The
# contract's `room(id) { participants { all six fields } }` on a full room (10,000 members) costs 60,007.
GRAPHQL_MAX_COST = env_int("GRAPHQL_MAX_COST", 100_000)
GRAPHQL_MAX_ALIASES = env_int("GRAPHQL_MAX_ALIASES", 30)
GRAPHQL_MAX_ROOT_FIELDS = env_int("GRAPHQL_MAX_ROOT_FIELDS", 10)
# Requests to /graphql per user (per client address when anonymous); RATE_LIMITS=off turns it off.
GRAPHQL_REQUESTS_PER_MINUTE = env_int("GRAPHQL_REQUESTS_PER_MINUTE", 60)

# --- WebSocket limits ---------------------------------------------------------------------------------
WS_MAX_FRAME_BYTES = 64 * 1024
WS_IDLE_SECONDS = env_int("WS_IDLE_SECONDS", 120)
WS_MESSAGES_PER_SECOND = env_int("WS_MESSAGES_PER_SECOND", 20)
WS_MESSAGES_BURST = env_int("WS_MESSAGES_BURST", 40)
WS_MAX_SOCKETS_PER_USER = env_int("WS_MAX_SOCKETS_PER_USER", 20)
# With Redis the cap counts every process's sockets; a seat not renewed by its process (it died) expires after this.
WS_SOCKET_CAP_TTL_SECONDS = env_int("WS_SOCKET_CAP_TTL_SECONDS", 45)
WS_REPLAY_PAGE_SIZE = env_int("WS_REPLAY_PAGE_SIZE", 500)
# The user socket (/ws/me/) follows at most this many of the user's rooms, the most recently active first.
WS_ME_MAX_ROOMS = env_int("WS_ME_MAX_ROOMS", 500)
MESSAGE_BODY_MAX_CHARS = 4000

# --- Attachments (messaging.attachments) ---------------------------------------------------------------
# Files live behind Django's storage API: the local file system under MEDIA_ROOT by default, any S3-compatible
# store (django-storages) when AWS_STORAGE_BUCKET_NAME is set. MEDIA_ROOT is never served as such: every
# download goes through the app's signed, members-only view (docs/API.md, "Attachments").
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
MEDIA_URL = "/media/"  # unused by any route: FileSystemStorage wants one
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
STORAGES: dict[str, Any] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if AWS_STORAGE_BUCKET_NAME:
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
            "location": env_str("AWS_LOCATION", "attachments"),
            "default_acl": None,  # the bucket stays private: the app streams every download itself
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
ATTACHMENT_MAX_BYTES = env_int("ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
ATTACHMENT_MAX_PER_MESSAGE = env_int("ATTACHMENT_MAX_PER_MESSAGE", 10)
# Uploads a user may hold in one room that no message carries yet (bounds what an idle uploader can store).
ATTACHMENT_MAX_PENDING = env_int("ATTACHMENT_MAX_PENDING", 20)
ATTACHMENT_ALLOWED_TYPES = env_list(
    "ATTACHMENT_ALLOWED_TYPES",
    ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "application/zip"],
)
# Width x height (x frames) an image may decode to: a small file declaring a huge canvas is refused unread.
ATTACHMENT_MAX_IMAGE_PIXELS = env_int("ATTACHMENT_MAX_IMAGE_PIXELS", 40_000_000)
ATTACHMENT_THUMBNAIL_PIXELS = env_int("ATTACHMENT_THUMBNAIL_PIXELS", 320)
# Worker processes that decode, re-encode and thumbnail uploaded images (messaging/image_pool.py), off the
# server process's GIL, at nice ATTACHMENT_IMAGE_NICE. 0 processes the image on the request's thread: the
# default inside pytest, whose settings overrides a spawned worker would not see.
ATTACHMENT_IMAGE_WORKERS = env_int("ATTACHMENT_IMAGE_WORKERS", 0 if "pytest" in sys.modules else 1)
ATTACHMENT_IMAGE_NICE = env_int("ATTACHMENT_IMAGE_NICE", 10)
ATTACHMENT_ORPHAN_HOURS = env_int("ATTACHMENT_ORPHAN_HOURS", 24)
# How long a download link works (the contract: at most one hour; chattalk_project.checks refuses more).
ATTACHMENT_URL_SECONDS = env_int("ATTACHMENT_URL_SECONDS", 3600)
ATTACHMENT_UPLOADS_PER_MINUTE = env_int("ATTACHMENT_UPLOADS_PER_MINUTE", 30)
# Django spools an upload to disk past this size instead of holding it in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)

# --- i18n, static -------------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ko", "한국어")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))

# --- Security -----------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Content-Security-Policy (chattalk_project/csp.py): `on`, `report-only` (reported, not enforced) or `off`.
CONTENT_SECURITY_POLICY = env_str("CONTENT_SECURITY_POLICY", "on").lower()
if CONTENT_SECURITY_POLICY not in {"on", "report-only", "off"}:
    raise ImproperlyConfigured(
        f"CONTENT_SECURITY_POLICY must be on, report-only or off, got {CONTENT_SECURITY_POLICY!r}"
    )

METRICS_TOKEN = env_str("METRICS_TOKEN")

# --- Logging ------------------------------------------------------------------------------------------
LOG_FORMAT = env_str("LOG_FORMAT", "text")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# uvicorn's TRACE (every ASGI message), known to every process so that LOG_LEVEL=TRACE also works in manage.py.
logging.addLevelName(5, "TRACE")
# uvicorn's access log (one line per HTTP request), scrubbed like every line; off by default.
ACCESS_LOG = env_bool("ACCESS_LOG", False)
# Every line of every logger leaves through the one `console` handler, whose RedactSecrets filter takes tokens
# out (a socket's ?access_token=, Bearer headers, JWTs). So no logger may keep a handler of its own: Django's
# default ones ("django", "django.server") and uvicorn's (configured by uvicorn before it imports this app;
# this configuration runs after and replaces them) are emptied here. uvicorn's levels (`--log-level`, set by
# scripts/serve from LOG_LEVEL) are kept by naming its loggers without a level; its access log is on only with
# ACCESS_LOG, whatever the command line says, since naming "uvicorn" would otherwise switch it on.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "core.request_id.RequestIdFilter"},
        "redact_secrets": {"()": "core.request_id.RedactSecrets"},
        "without_traceback": {"()": "core.request_id.WithoutTraceback"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "core.request_id.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
            "filters": ["request_id", "redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        "django.db.backends": {"level": "INFO"},
        "django.request": {"level": "ERROR"},
        "django.security.DisallowedHost": {"level": "WARNING", "filters": ["without_traceback"]},
        "uvicorn": {"handlers": ["console"], "propagate": False},
        "uvicorn.error": {},
        "uvicorn.asgi": {},
        "uvicorn.access": {"handlers": ["console"] if ACCESS_LOG else [], "propagate": False},
    },
}


def redact_url(url: str) -> str:
    """Drop the password from a service URL before it is shown in /readyz or logs."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url

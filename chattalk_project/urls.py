"""URL roots. Each app owns its own urls; this file only mounts them."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt

from core import errors, metrics

from . import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/auth/", include("accounts.urls")),
    path("api/", include("rooms.urls")),
    path("api/", include("messaging.urls")),
    path("api/", include("presence.urls")),
    path("", include("chattalk_project.api_urls")),
    path("", include("chattalk_project.page_urls")),
    # Unknown /api/ paths answer the contract's JSON 404 in DEBUG too (Django's debug page is HTML).
    # csrf_exempt: a POST to an unknown /api/ path must get this JSON 404, not the CSRF failure HTML page.
    re_path(r"^api/", csrf_exempt(errors.handler404)),
]

handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"

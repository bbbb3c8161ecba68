"""The API's documentation pages, all from our own static files (they work offline and under the strict
Content-Security-Policy): Swagger UI, Redoc, GraphiQL's template (the view is chattalk_project.graphql), the
/api/docs/ index that links them, and /favicon.ico.

Swagger UI is drf-spectacular's split view: its setup script is a second request to the same URL
(`?script`), not an inline block. Redoc is started by its own `<redoc spec-url>` element, with no script of
ours; it gets a named exception to the strict policy (chattalk_project.csp.redoc_policy), as GraphiQL does
for its data: fonts.
"""

from __future__ import annotations

import functools
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

from .csp import redoc_policy, with_policy

GRAPHIQL_TEMPLATE = "api_docs/graphiql.html"


class SwaggerUIView(SpectacularSwaggerSplitView):
    """Swagger UI without inline script or style."""

    template_name = "api_docs/swagger_ui.html"


class RedocView(SpectacularRedocView):
    """Redoc without web fonts from Google and without inline script."""

    template_name = "api_docs/redoc.html"


swagger_ui = SwaggerUIView.as_view(url_name="api-schema")
redoc = with_policy(redoc_policy)(RedocView.as_view(url_name="api-schema"))


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    """/api/docs/: where the API's descriptions are, for a person (the UIs) and for a code generator (the
    schema files). GraphiQL is listed only when it is served (DEBUG)."""
    return render(request, "api_docs/index.html", {"graphiql": settings.DEBUG})


@functools.cache
def _favicon_bytes() -> bytes:
    found = finders.find("favicon.ico")
    return Path(found).read_bytes() if found else b""


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask /favicon.ico whatever the page's <link rel=icon> says; answering it keeps 404s out of the
    log. The pages themselves name static/favicon.svg."""
    response = HttpResponse(_favicon_bytes(), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response

"""GraphQL, the OpenAPI schema and the API's documentation pages: edges that span apps."""

from django.urls import path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView

from . import api_docs
from .graphql import ChatTalkGraphQLView

urlpatterns = [
    path("graphql", ChatTalkGraphQLView.as_view(), name="graphql"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/schema/ui/", api_docs.swagger_ui, name="api-schema-ui"),
    path("api/schema/redoc/", api_docs.redoc, name="api-schema-redoc"),
    path("api/docs/", api_docs.index, name="api-docs"),
    path("api/docs", RedirectView.as_view(pattern_name="api-docs", permanent=True)),
    path("favicon.ico", api_docs.favicon, name="favicon"),
]

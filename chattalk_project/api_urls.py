"""GraphQL and the OpenAPI schema: edges that span apps."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .csp import with_tools_policy
from .graphql import ChatTalkGraphQLView

urlpatterns = [
    path("graphql", ChatTalkGraphQLView.as_view(), name="graphql"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI loads its code from a CDN, with an inline setup script: the tools' policy, not the strict one.
    path(
        "api/schema/ui/", with_tools_policy(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-schema-ui"
    ),
]

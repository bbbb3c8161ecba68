"""GraphQL and the OpenAPI schema: edges that span apps."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .graphql import ChatTalkGraphQLView

urlpatterns = [
    path("graphql", ChatTalkGraphQLView.as_view(), name="graphql"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/schema/ui/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-schema-ui"),
]

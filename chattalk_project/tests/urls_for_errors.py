"""URLs used only by the error-format tests: views that fail on purpose."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView


class ExplodingApiView(APIView):
    permission_classes = [AllowAny]

    def get(self, request: Request) -> HttpResponse:
        raise RuntimeError("secret internals: /etc/passwd")


def exploding_django_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret internals: /etc/passwd")


urlpatterns = [
    path("api/boom-drf", ExplodingApiView.as_view()),
    path("api/boom-django", exploding_django_view),
    path("", include("chattalk_project.urls")),
]

# Error handlers belong to the URLconf: the same as the project's.
handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"

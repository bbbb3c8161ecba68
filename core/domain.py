"""The base of every domain refusal. Services raise these; each edge (REST, GraphQL, WebSocket, admin)
turns one into its own wire shape: a 4xx JSON body, an `error` code in GraphQL data, an error frame or a
close code. Keeping them free of DRF and graphene is what lets one service serve every edge."""

from __future__ import annotations


class DomainError(Exception):
    code: str = "error"
    http_status: int = 400
    default_detail: str = "The request cannot be done."

    def __init__(self, detail: str | None = None, *, fields: dict[str, list[str]] | None = None):
        self.detail = detail or self.default_detail
        self.fields = fields
        super().__init__(self.detail)


class NotFound(DomainError):
    code = "not_found"
    http_status = 404
    default_detail = "Not found."


class Forbidden(DomainError):
    code = "forbidden"
    http_status = 403
    default_detail = "You may not do this."


class InvalidInput(DomainError):
    code = "validation_error"
    http_status = 400
    default_detail = "The request is not valid."


class ServiceUnavailable(DomainError):
    """A service the answer depends on is away (the denylist's cache, the database): retry shortly."""

    code = "unavailable"
    http_status = 503
    default_detail = "A service this needs is temporarily unavailable; retry shortly."

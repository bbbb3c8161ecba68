"""Errors and the caller at the GraphQL edge, for every app's schema module.

A refusal in a query becomes a GraphQL error whose `extensions.code` is the contract's code (the same codes
as REST's error body); mutations answer refusals as data instead (see rooms.schema.MembershipPayload).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import graphene
from graphql import GraphQLError

from core.domain import DomainError

T = TypeVar("T")


def graphql_error(code: str, message: str) -> GraphQLError:
    """A GraphQL error carrying the contract's code in `extensions.code`."""
    return GraphQLError(message, extensions={"code": code})


def domain_errors_as_graphql(resolver: Callable[..., T]) -> Callable[..., T]:
    """For query resolvers: a service's DomainError becomes a GraphQL error with the same code."""

    @functools.wraps(resolver)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return resolver(*args, **kwargs)
        except DomainError as exc:
            raise graphql_error(exc.code, exc.detail) from exc

    return wrapper


def current_user(info: graphene.ResolveInfo) -> Any:
    user = getattr(info.context, "user", None)
    return user if user is not None and user.is_authenticated else None


def require_user(info: graphene.ResolveInfo) -> Any:
    """The authenticated caller, or the `not_authenticated` error (REST answers 401 there)."""
    user = current_user(info)
    if user is None:
        raise graphql_error("not_authenticated", "Authentication credentials were not provided.")
    return user

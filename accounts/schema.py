"""GraphQL of accounts: `me`, the caller (null when anonymous). Authentication itself happens once, in
chattalk_project/graphql.py, through the same check as REST."""

from __future__ import annotations

from typing import Any

import graphene

from .models import User


class PublicUser(graphene.ObjectType):
    """The embedded User of the contract: {id, username, nickname}."""

    id = graphene.Int(required=True)
    username = graphene.String(required=True)
    nickname = graphene.String(required=True)


class Me(graphene.ObjectType):
    id = graphene.Int(required=True)
    username = graphene.String(required=True)
    nickname = graphene.String(required=True)
    email = graphene.String(required=True)
    is_staff = graphene.Boolean(required=True)


class Query(graphene.ObjectType):
    me = graphene.Field(Me, description="The caller, or null when not authenticated.")

    def resolve_me(self, info: graphene.ResolveInfo) -> User | None:
        user: Any = info.context.user
        return user if user.is_authenticated else None

"""The GraphQL schema, assembled from each app's Query and Mutation (graphene types stay in the apps)."""

from __future__ import annotations

import importlib

import graphene

APPS_WITH_SCHEMA = ("accounts", "rooms", "messaging", "presence")


def _collect(attr: str) -> list[type]:
    found = []
    for app in APPS_WITH_SCHEMA:
        try:
            module = importlib.import_module(f"{app}.schema")
        except ModuleNotFoundError as exc:
            if exc.name == f"{app}.schema":
                continue
            raise
        if hasattr(module, attr):
            found.append(getattr(module, attr))
    return found


class _Health(graphene.ObjectType):
    ok = graphene.Boolean(required=True)


class BaseQuery(graphene.ObjectType):
    health = graphene.Field(_Health, required=True)

    def resolve_health(self, info: graphene.ResolveInfo) -> dict[str, bool]:
        return {"ok": True}


Query = type("Query", (*_collect("Query"), BaseQuery), {})
_mutations = _collect("Mutation")
Mutation = type("Mutation", (*_mutations, graphene.ObjectType), {}) if _mutations else None

schema = graphene.Schema(query=Query, mutation=Mutation, auto_camelcase=True)

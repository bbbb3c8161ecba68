"""The GraphQL schema, assembled from each app's contributions (graphene types stay in the apps).

Each app's `<app>.schema` may define `Query` and `Mutation` (field mixins), `RoomFields` (fields of the
Room type: rooms its own columns, messaging `unread`, presence `participants`) and `LIST_BOUNDS` (how many
items its list fields can answer, for the cost limit). Assembling the Room type
here lets every field live with the app that owns its data while the import direction stays one-way;
apps refer to the assembled type by its path, `chattalk_project.schema.Room`.
"""

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


# Later apps' fields come first in the MRO, so an app could refine a field of an app below it.
Room = type(
    "Room",
    (*reversed(_collect("RoomFields")), graphene.ObjectType),
    {"__doc__": "A chat room. Per-room fields of a list are loaded once for the whole list."},
)
Query = type("Query", (*_collect("Query"), BaseQuery), {})
_mutations = _collect("Mutation")
Mutation = type("Mutation", (*_mutations, graphene.ObjectType), {}) if _mutations else None

schema = graphene.Schema(query=Query, mutation=Mutation, auto_camelcase=True)

# How many items each list field can answer ("Type.field" -> graphql_limits.ListBound), declared by the app
# that owns the field: the cost limit charges a list at its bound.
LIST_BOUNDS = {field: bound for bounds in _collect("LIST_BOUNDS") for field, bound in bounds.items()}

"""Limits of the GraphQL endpoint: query size (checked before parsing), then depth, cost, aliases and root
fields (validation rules, run before GraphQL's own validation).

Each refuses with a GraphQL error body carrying a code, never a 500: a body over GRAPHQL_MAX_QUERY_BYTES is
a 413 `query_too_large` before anything reads or parses it; a selection nested deeper than
GRAPHQL_MAX_DEPTH is a 400 `query_too_deep`, one over GRAPHQL_MAX_COST a 400 `query_too_expensive`, more
aliases than GRAPHQL_MAX_ALIASES a 400 `too_many_aliases`, more root fields than GRAPHQL_MAX_ROOT_FIELDS a
400 `too_many_root_fields`, all before anything executes.

Depth counts field levels: `{ rooms { edges { node { id } } } }` is 4. Fragments count where they are
spread (a fragment's depth is computed once, so sibling spreads cannot blow up the check) and a fragment
cycle counts as too deep. Introspection's `ofType` links are not counted: they form a chain without fan-out,
and GraphiQL's standard introspection query needs about a dozen of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
    get_nullable_type,
    is_list_type,
    parse,
    validate,
)

UNCOUNTED_FIELDS = frozenset({"ofType"})


def query_too_large(request: HttpRequest) -> JsonResponse | None:
    """A 413 for a body or GET query over the limit, judged by Content-Length first so that an oversized
    body is never read into memory (nor trips Django's own upload limit into an HTML 400)."""
    limit = settings.GRAPHQL_MAX_QUERY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    too_large = (
        declared > limit
        or len(request.GET.get("query", "")) > limit
        or (declared == 0 and request.method == "POST" and len(request.body or b"") > limit)
    )
    if not too_large:
        return None
    return JsonResponse(
        {
            "errors": [
                {
                    "message": f"Query too large: the limit is {limit} bytes.",
                    "extensions": {"code": "query_too_large"},
                }
            ]
        },
        status=413,
    )


class _TooDeep(Exception):
    pass


class QueryDepthLimit(ValidationRule):
    """Refuses operations nested deeper than settings.GRAPHQL_MAX_DEPTH (read per request, for tests)."""

    def __init__(self, context: ValidationContext):
        super().__init__(context)
        self.max_depth: int = settings.GRAPHQL_MAX_DEPTH
        definitions = context.document.definitions
        self.fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
        self.fragment_depths: dict[str, int] = {}
        self.in_progress: set[str] = set()
        for definition in definitions:
            if isinstance(definition, OperationDefinitionNode):
                self._check(definition)

    def _check(self, operation: OperationDefinitionNode) -> None:
        try:
            depth = self._depth(operation.selection_set, 0)
        except (_TooDeep, RecursionError):
            depth = self.max_depth + 1
        if depth > self.max_depth:
            name = operation.name.value if operation.name else "anonymous"
            self.report_error(
                GraphQLError(
                    f"Operation '{name}' is nested deeper than the limit of {self.max_depth}.",
                    operation,
                    extensions={"code": "query_too_deep"},
                )
            )

    def _depth(self, selection_set: SelectionSetNode | None, above: int) -> int:
        """The depth of a selection set whose parent sits at depth `above`; raises _TooDeep past the limit."""
        if selection_set is None:
            return above
        deepest = above
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                level = above if selection.name.value in UNCOUNTED_FIELDS else above + 1
                if level > self.max_depth:
                    raise _TooDeep
                deepest = max(deepest, self._depth(selection.selection_set, level))
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, self._depth(selection.selection_set, above))
            elif isinstance(selection, FragmentSpreadNode):
                deepest = max(deepest, above + self._fragment_depth(selection.name.value))
                if deepest > self.max_depth:
                    raise _TooDeep
        return deepest

    def _fragment_depth(self, name: str) -> int:
        """A fragment's own depth, computed once; unknown fragments are another rule's error."""
        if name in self.fragment_depths:
            return self.fragment_depths[name]
        fragment = self.fragments.get(name)
        if fragment is None:
            return 0
        if name in self.in_progress:
            raise _TooDeep  # a cycle: infinitely deep (NoFragmentCyclesRule reports it too)
        self.in_progress.add(name)
        try:
            depth = self._depth(fragment.selection_set, 0)
        finally:
            self.in_progress.discard(name)
        self.fragment_depths[name] = depth
        return depth


@dataclass(frozen=True)
class ListBound:
    """How many items a field of the schema can answer, for the cost limit: `default` when its size argument
    is absent, that argument's literal value capped at `maximum`, or `maximum` when the size is a variable
    (or the field has no size argument: then default and maximum are the list's real bound)."""

    argument: str | None
    default: int
    maximum: int

    def items(self, field: FieldNode) -> int:
        for argument in field.arguments or ():
            if argument.name.value == self.argument:
                if isinstance(argument.value, IntValueNode):
                    return max(1, min(int(argument.value.value), self.maximum))
                return self.maximum  # a variable, or a value of the wrong type that validation refuses
        return self.default


UNDECLARED_LIST_BOUND = 100  # a list field nobody declared a bound for (the schema's tests forbid one)


class QueryCostLimit(ValidationRule):
    """Refuses operations whose estimated cost exceeds settings.GRAPHQL_MAX_COST, and operations with more
    aliases than GRAPHQL_MAX_ALIASES or more root fields than GRAPHQL_MAX_ROOT_FIELDS.

    Each field costs 1, times the number of items of every list above it: a field's bound comes from
    `list_bounds` ("Type.field" -> ListBound, declared by the app that owns the field), so an unpaged list
    is charged at its real bound (a room's `participants` at the model's 10,000 seats), not at 1. Without
    that, 300 aliases of `myRooms { participants { ... } }` passed as cheap and answered 1.3 MB after 2 s.
    Introspection's lists are not multiplied: they are bounded by the schema itself.
    """

    list_bounds: Mapping[str, ListBound] = {}

    def __init__(self, context: ValidationContext):
        super().__init__(context)
        self.schema = context.schema
        self.max_cost: int = settings.GRAPHQL_MAX_COST
        definitions = context.document.definitions
        self.fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
        self.fragment_costs: dict[str, int] = {}
        self.in_progress: set[str] = set()
        self._check_aliases(definitions)
        for definition in definitions:
            if isinstance(definition, OperationDefinitionNode):
                self._check_operation(definition)

    def _refuse(self, node: Any, message: str, code: str) -> None:
        self.report_error(GraphQLError(message, node, extensions={"code": code}))

    def _check_aliases(self, definitions: Any) -> None:
        limit = settings.GRAPHQL_MAX_ALIASES
        aliases = 0
        for definition in definitions:
            if isinstance(definition, (OperationDefinitionNode, FragmentDefinitionNode)):
                aliases += _count_aliases(definition.selection_set)
        if aliases > limit:
            self._refuse(None, f"The document has {aliases} aliases, over the limit of {limit}.", "too_many_aliases")

    def _check_operation(self, operation: OperationDefinitionNode) -> None:
        name = operation.name.value if operation.name else "anonymous"
        root = self.schema.get_root_type(operation.operation)
        root_fields = self._root_fields(operation.selection_set, set())
        limit = settings.GRAPHQL_MAX_ROOT_FIELDS
        if root_fields > limit:
            self._refuse(
                operation,
                f"Operation '{name}' asks for {root_fields} root fields, over the limit of {limit}.",
                "too_many_root_fields",
            )
            return
        cost = self._cost(operation.selection_set, root)
        if cost > self.max_cost:
            self._refuse(
                operation,
                f"Operation '{name}' is too expensive: estimated cost {cost} over the limit of {self.max_cost}. "
                "Ask for smaller pages, fewer aliases or fewer list fields.",
                "query_too_expensive",
            )

    def _root_fields(self, selection_set: SelectionSetNode, seen_fragments: set[str]) -> int:
        count = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                count += 1
            elif isinstance(selection, InlineFragmentNode):
                count += self._root_fields(selection.selection_set, seen_fragments)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None and selection.name.value not in seen_fragments:
                    seen_fragments.add(selection.name.value)
                    count += self._root_fields(fragment.selection_set, seen_fragments)
        return count

    def _items(self, parent: GraphQLNamedType | None, field: FieldNode) -> int:
        """How many times the field's own selection is resolved: its list bound, or 1."""
        if parent is None or not isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
            return 1
        definition = parent.fields.get(field.name.value)
        if definition is None or parent.name.startswith("__") or field.name.value.startswith("__"):
            return 1
        bound = self.list_bounds.get(f"{parent.name}.{field.name.value}")
        if bound is not None:
            return bound.items(field)
        return UNDECLARED_LIST_BOUND if is_list_type(get_nullable_type(definition.type)) else 1

    def _child_type(self, parent: GraphQLNamedType | None, field: FieldNode) -> GraphQLNamedType | None:
        if not isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
            return None
        definition = parent.fields.get(field.name.value)
        return get_named_type(definition.type) if definition is not None else None

    def _condition(self, node: InlineFragmentNode | FragmentDefinitionNode, parent: GraphQLNamedType | None) -> Any:
        if node.type_condition is None:
            return parent
        return self.schema.get_type(node.type_condition.name.value)

    def _cost(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                child = self._child_type(parent, selection)
                total += 1 + self._items(parent, selection) * self._cost(selection.selection_set, child)
            elif isinstance(selection, InlineFragmentNode):
                total += self._cost(selection.selection_set, self._condition(selection, parent))
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment_cost(selection.name.value)
            if total > self.max_cost:
                return total  # already refused: stop counting
        return total

    def _fragment_cost(self, name: str) -> int:
        if name in self.fragment_costs:
            return self.fragment_costs[name]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.in_progress:
            return 0  # unknown fragments and cycles are other rules' errors
        self.in_progress.add(name)
        try:
            cost = self._cost(fragment.selection_set, self._condition(fragment, None))
        finally:
            self.in_progress.discard(name)
        self.fragment_costs[name] = cost
        return cost


def _count_aliases(selection_set: SelectionSetNode | None) -> int:
    """Aliased fields written in a selection set (each written alias once, however often it is spread)."""
    if selection_set is None:
        return 0
    count = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            count += (selection.alias is not None) + _count_aliases(selection.selection_set)
        elif isinstance(selection, InlineFragmentNode):
            count += _count_aliases(selection.selection_set)
    return count


def limit_rules(list_bounds: Mapping[str, ListBound]) -> tuple[Any, ...]:
    """The depth and cost limits as validation rules; `list_bounds` is the schema's declared list sizes
    ("Type.field" -> ListBound)."""
    cost_limit = type("QueryCostLimit", (QueryCostLimit,), {"list_bounds": dict(list_bounds)})
    return (QueryDepthLimit, cost_limit)


def refused_by_limits(schema: GraphQLSchema, query: str, rules: tuple[Any, ...]) -> list[GraphQLError]:
    """The limits alone, before GraphQL's own validation runs: a refused document then costs a parse and one
    walk instead of GraphQL's 27 standard rules as well (a 300-alias query: a third of the time). A document
    that does not parse is left to the view, which reports it as usual."""
    try:
        document = parse(query)
    except GraphQLError:
        return []
    return validate(schema, document, rules)

"""Limits of the GraphQL endpoint: query size (checked before parsing) and query depth (a validation rule).

Both refuse with a GraphQL error body carrying a code, never a 500: a body over GRAPHQL_MAX_QUERY_BYTES is
a 413 `query_too_large` before anything reads or parses it; a selection nested deeper than
GRAPHQL_MAX_DEPTH is a 400 `query_too_deep` before anything executes.

Depth counts field levels: `{ rooms { edges { node { id } } } }` is 4. Fragments count where they are
spread (a fragment's depth is computed once, so sibling spreads cannot blow up the check) and a fragment
cycle counts as too deep. Introspection's `ofType` links are not counted: they form a chain without fan-out,
and GraphiQL's standard introspection query needs about a dozen of them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    specified_rules,
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


LIST_SIZE_ARGUMENTS = ("first", "last", "limit")
UNKNOWN_LIST_SIZE = 100  # a page size given by a variable: assume the largest page a resolver serves
CONNECTION_DEFAULT_PAGE = 20  # a Relay connection asked without `first` serves its default page


class QueryCostLimit(ValidationRule):
    """Refuses operations whose estimated cost exceeds settings.GRAPHQL_MAX_COST.

    Depth and size limits leave width open: one 20 KiB query of 193 aliases of `rooms(first: 100)` with
    participants took about 3 s of a process and answered 6 MB. Each field costs 1, times the page sizes
    of the list fields above it (`first`, `last` or `limit` arguments), so aliases and big pages add up.
    """

    def __init__(self, context: ValidationContext):
        super().__init__(context)
        self.max_cost: int = settings.GRAPHQL_MAX_COST
        definitions = context.document.definitions
        self.fragments = {d.name.value: d for d in definitions if isinstance(d, FragmentDefinitionNode)}
        self.fragment_costs: dict[str, int] = {}
        self.in_progress: set[str] = set()
        for definition in definitions:
            if isinstance(definition, OperationDefinitionNode):
                cost = self._cost(definition.selection_set)
                if cost > self.max_cost:
                    name = definition.name.value if definition.name else "anonymous"
                    self.report_error(
                        GraphQLError(
                            f"Operation '{name}' is too expensive: estimated cost {cost} over the limit of "
                            f"{self.max_cost}. Ask for smaller pages or fewer aliases.",
                            definition,
                            extensions={"code": "query_too_expensive"},
                        )
                    )

    @staticmethod
    def _page_size(field: FieldNode) -> int:
        for argument in field.arguments or ():
            if argument.name.value in LIST_SIZE_ARGUMENTS:
                value = getattr(argument.value, "value", None)
                try:
                    return max(1, min(int(value), 10_000)) if value is not None else UNKNOWN_LIST_SIZE
                except (TypeError, ValueError):
                    return UNKNOWN_LIST_SIZE
        children = field.selection_set.selections if field.selection_set else ()
        if any(isinstance(child, FieldNode) and child.name.value == "edges" for child in children):
            return CONNECTION_DEFAULT_PAGE
        return 1

    def _cost(self, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += 1 + self._page_size(selection) * self._cost(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                total += self._cost(selection.selection_set)
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
            cost = self._cost(fragment.selection_set)
        finally:
            self.in_progress.discard(name)
        self.fragment_costs[name] = cost
        return cost


def rules_with_limits() -> tuple[Any, ...]:
    """GraphQL's standard rules plus the depth and cost limits (a view's validation_rules replace the
    standard ones)."""
    return (*specified_rules, QueryDepthLimit, QueryCostLimit)

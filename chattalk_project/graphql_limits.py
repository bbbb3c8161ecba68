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


def rules_with_limits() -> tuple[Any, ...]:
    """GraphQL's standard rules plus the depth limit (a view's validation_rules replace the standard ones)."""
    return (*specified_rules, QueryDepthLimit)

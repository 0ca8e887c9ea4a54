"""The `Allow` header of a 405: every method the path answers, over all its routes.

Starlette's 405 names only the methods of the first route whose path matched, so a path
served by several routes (`GET` and `PATCH /admin/models/{m}/policy`) would advertise one.
RFC 9110, section 15.5.6: a 405 "MUST generate an Allow header field ... containing a list
of the target resource's currently supported methods".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from re import Pattern

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, compile_path, get_route_path
from starlette.types import Scope

_PARAMETER = re.compile(r"{[^}]*}")


@cache
def _regex(path: str) -> Pattern[str]:
    return compile_path(path)[0]


def _literal_length(template: str) -> int:
    return len(_PARAMETER.sub("", template))


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """The sorted methods of the routes (included routers too) whose path template
    matches `scope`'s path most specifically: as OpenAPI matches paths, a concrete
    template (`/admin/experiments/reset`) wins over a templated one
    (`/admin/experiments/{experiment}`); here, the template with the most literal text."""
    path = get_route_path(scope)
    by_template: dict[str, set[str]] = {}
    for route in iter_route_contexts(routes):
        if route.path and route.methods and _regex(route.path).match(path):
            by_template.setdefault(route.path, set()).update(route.methods)
    if not by_template:
        return []
    best = max(_literal_length(t) for t in by_template)
    return sorted(set().union(*(m for t, m in by_template.items() if _literal_length(t) == best)))

"""The evolutionary search over metric trees (DEAP). Never imports torch or ray, not even
transitively: everything that needs tensors (simplification, canonical keys, fingerprints,
evaluation) is injected by the caller (``gpsearch/search_run.py``).

Calling this package, ``gpsearch.search(settings)``, is the API function ``gpsearch.api.search``
(imported only when called; see ``gpsearch/callable_module.py``)."""

from ..callable_module import make_callable

make_callable(__name__, "search")

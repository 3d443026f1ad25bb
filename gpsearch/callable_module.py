"""``gpsearch.search(...)`` and ``gpsearch.compare(...)`` are API functions, while
``gpsearch.search`` (the GP subpackage) and ``gpsearch.compare`` (the comparison module) are also
modules: once a submodule is imported, Python binds its name on the package, so a plain function
of that name would be replaced. Those two modules are therefore made callable: calling the module
calls the API function (``gpsearch.api``), and everything else about the module is unchanged.
"""

from __future__ import annotations

import importlib
import sys
import types


class _CallableModule(types.ModuleType):
    _api_function: str = ""

    def __call__(self, *args, **kwargs):
        return getattr(importlib.import_module("gpsearch.api"), self._api_function)(*args, **kwargs)


def make_callable(module_name: str, api_function: str) -> None:
    """Calling ``sys.modules[module_name]`` calls ``gpsearch.api.<api_function>``."""
    cls = type(f"Callable_{api_function}", (_CallableModule,), {"_api_function": api_function,
                                                                  "__doc__": None})
    sys.modules[module_name].__class__ = cls

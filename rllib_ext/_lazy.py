"""One package's public names, each loading its module on first use (a module ``__getattr__``).

Reading one policy must import the reader's chain and nothing else, so ``checkpoint``,
``pool`` and ``merge`` serve their names from a table instead of importing every module.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Mapping, Tuple


def lazy_names(package: str, public: Mapping[str, str], namespace: Dict[str, object]
               ) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, serving ``{name: module}`` from ``public``.

    Once loaded, a name becomes a plain attribute in ``namespace`` (the package's globals).
    """

    def __getattr__(name: str) -> Any:
        if name in public:
            value = getattr(importlib.import_module(f"{package}.{public[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__

"""Reading what a run or sweep directory stores, without running any of it.

Directories are shared and downloaded, so a stored config is data, never code: nothing in it is instantiated or
imported. A `_target_` is looked up among the project's own classes (every module of the package), and
a class is built only from plain values (numbers, text, lists) that pass the same closed schema as a job's config
(diffusion_runner.validate).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterable
from typing import Any

from omegaconf import OmegaConf

from diffusion_runner.errors import ConfigError
from diffusion_runner.validate import check_target_node

PLAIN = (bool, int, float, str, type(None))
HARMLESS = {"_target_", "_convert_"}  # _convert_ only changes container types, which plain values do not have


class StoredConfigError(ValueError):
    """A stored config node the project will not build: not one of its own classes, or not plain values."""


@functools.cache
def import_project() -> None:
    """Import every module of the project (never a stored file), so that subclasses() sees every family's classes:
    a family is found by its subpackage alone."""
    import diffusion_runner

    for module in pkgutil.walk_packages(diffusion_runner.__path__, "diffusion_runner."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


def subclasses(base: type) -> set[type]:
    """Every class of the project derived from `base`."""
    import_project()
    found, todo = set(), [base]
    while todo:
        for cls in todo.pop().__subclasses__():
            if cls not in found:
                found.add(cls)
                todo.append(cls)
    return found


def lookup(path: Any, allowed: Iterable[Any]) -> Any | None:
    """What the dotted path names, if that is one of `allowed`; None otherwise. Only modules already imported are
    looked in, so nothing is imported or run."""
    if not isinstance(path, str):
        return None
    module, _, name = path.rpartition(".")
    found = getattr(sys.modules.get(module), name, None) if module else None
    return found if found is not None and any(found is a for a in allowed) else None


def _plain(value: Any, key: str) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            _plain(item, f"{key}[{i}]")
    elif not isinstance(value, PLAIN):
        raise StoredConfigError(f"{key}: a stored config is read only as plain values, got {type(value).__name__}")
    elif isinstance(value, str) and "${" in value:
        raise StoredConfigError(f"{key}: an interpolation is not resolved from a stored config, got {value!r}")


def build(node: Any, allowed: Iterable[Callable[..., Any]], key: str, kind: str) -> Any:
    """Call the registered constructor `node["_target_"]` names (one of `allowed`) with the node's plain values,
    after the closed-schema check of a job's config; StoredConfigError (one line, naming the key) otherwise."""
    allowed = list(allowed)
    if not isinstance(node, dict):
        raise StoredConfigError(f"{key}: expected a mapping, got {type(node).__name__}")
    target = lookup(node.get("_target_"), allowed)
    if target is None:
        raise StoredConfigError(f"{key}._target_: {node.get('_target_')!r} is not one of the project's {kind}")
    for name, value in node.items():
        if str(name).startswith("_") and name not in HARMLESS:
            raise StoredConfigError(f"{key}.{name}: not read from a stored config")
        _plain(value, f"{key}.{name}")
    try:
        check_target_node(OmegaConf.create(node), key)
        return target(**{k: v for k, v in node.items() if k not in HARMLESS})
    except (ConfigError, TypeError, ValueError) as e:
        raise StoredConfigError(str(e) if isinstance(e, ConfigError) else f"{key}: {e}") from e

"""Closed, typed configs: every key of the composed config is checked before any work, so a typo or a wrong value
is one line naming the key instead of a key silently ignored or a failure far downstream.

- Sections with a schema (diffusion_runner.config: the top level, train, eval) accept only their schema's keys, and
  the top level also the sections of the job's family (diffusion_runner.family.Family.sections).
- A `_target_` node accepts only the parameters its target takes (its class's __init__ and those of the classes
  it passes keywords on to), and each value must fit the parameter's annotation: an integer for `int`, a number
  for `float`, true/false for `bool` (not "no" or "yes"), text for `str`; `None` only where the annotation allows.
  The schema's own fields are checked the same way.
- No number anywhere in the config may be NaN or infinite.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import types
import typing
from dataclasses import fields
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig

from diffusion_runner.callbacks import Callback
from diffusion_runner.config import SCHEMAS
from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Family

HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line, naming the key) for the first mistake in the job's config."""
    _check_finite(cfg, "")
    family = family_class(cfg.get("family"))
    for section, schema in SCHEMAS.items():
        node = cfg.get(section) if section else cfg
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{section}: must be a mapping of its keys, got {node!r}")
        extra = set(family.sections()) if not section else set()
        _check_known(node.keys(), {f.name for f in fields(schema)} | extra, section,
                     "" if section else f" (family {cfg.family._target_} takes {', '.join(family.sections())})")
        _check_fields(node, schema, section)
    parts = dict.fromkeys(("dataset", "source", "logger", *family.sections()))  # once each: a family may own source
    for key in parts:
        if cfg.get(key) is None:
            raise ConfigError(f"{key}: not set; family {cfg.family._target_} needs {', '.join(family.sections())}")
    for key, base in family.types.items():  # a part of another family first: its keys would be wrong too
        node = cfg[key]
        try:
            target = _import(node._target_) if isinstance(node, DictConfig) and "_target_" in node else None
        except Exception:
            target = None  # named by check_target_node below
        if target is not None and not (isinstance(target, type) and issubclass(target, base)):
            raise ConfigError(f"{key}: {node._target_} is not a {base.__module__}.{base.__name__}, which family "
                              f"{cfg.family._target_} needs at {key}")
    for key in parts:
        check_target_node(cfg[key], key)
    for key in ("optimizer", "scheduler"):
        check_target_node(cfg.train[key], f"train.{key}")
    for name, node in cfg.eval.metrics.items():
        check_target_node(node, f"eval.metrics.{name}")
    for name, node in (cfg.train.get("callbacks") or {}).items():
        _check_callback(node, f"train.callbacks.{name}")


def _check_callback(node: Any, key: str) -> None:
    """A callback node: a `_target_` naming a diffusion_runner.callbacks.Callback, with its parameters."""
    if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
        raise ConfigError(f"{key}: must be a callback node such as "
                          "{_target_: diffusion_runner.callbacks.LogProgress}")
    check_target_node(node, key)
    target = _import(node._target_)
    if not (isinstance(target, type) and issubclass(target, Callback)):
        raise ConfigError(f"{key}._target_: '{node._target_}' is not a diffusion_runner.callbacks.Callback")


def family_class(node: Any) -> type[Family]:
    """The Family class a `family` node names, checked; ConfigError naming `family` otherwise."""
    if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
        raise ConfigError("family: must be a family node such as {_target_: diffusion_runner.score.Score} "
                          "(pick one with family=score)")
    try:
        target = _import(node._target_)
    except Exception as e:
        raise ConfigError(f"family._target_: cannot import '{node._target_}' ({type(e).__name__})") from e
    if not (isinstance(target, type) and issubclass(target, Family)):
        raise ConfigError(f"family._target_: '{node._target_}' is not a diffusion_runner.family.Family")
    check_target_node(node, "family")
    return target


def _check_fields(node: DictConfig, schema: type, where: str) -> None:
    """Every field of the schema is set, and each scalar fits its annotation."""
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        key = f"{where}.{f.name}" if where else f.name
        if f.name not in node:
            raise ConfigError(f"{key}: missing")
        if f.name not in SCHEMAS:
            _check_type(_value(node, f.name), hints[f.name], key)


def _check_finite(node: Any, key: str) -> None:
    if isinstance(node, DictConfig):
        for k in node:
            _check_finite(_value(node, k), f"{key}.{k}" if key else str(k))
    elif isinstance(node, ListConfig | list | tuple):
        for i, item in enumerate(node):
            _check_finite(item, f"{key}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{key}: must be a finite number, got {node}")


def _value(node: DictConfig, name: str) -> Any:
    """The child node (a DictConfig or ListConfig) or the resolved value; "???" (not set) as None."""
    child = node._get_node(name)
    if isinstance(child, DictConfig | ListConfig):
        return child
    return None if child._is_missing() else node[name]


def _check_known(keys, allowed: set[str], where: str, note: str = "") -> None:
    for key in keys:
        if key not in allowed and key not in HYDRA_KEYS:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            full = f"{where}.{key}" if where else str(key)
            hint = f" (did you mean {where + '.' if where else ''}{close[0]}?)" if close else ""
            raise ConfigError(f"{full}: unknown key{hint}{note}; allowed: {', '.join(sorted(allowed))}")


def _import(path: str) -> Any:
    """hydra.utils.get_object, without the error it logs when the import fails (we raise our own)."""
    logger = logging.getLogger("hydra.utils")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        return get_object(path)
    finally:
        logger.setLevel(level)


def _constructors(target: Any) -> list[Any]:
    """What calling the target runs, most derived first: a class's __init__ and those of its bases; a function."""
    return [c.__init__ for c in target.__mro__ if "__init__" in vars(c)] if isinstance(target, type) else [target]


def _parameters(target: Any) -> set[str] | None:
    """The keywords the target takes; None when it takes any keyword (not checkable)."""
    found: set[str] = set()
    for function in _constructors(target):
        try:
            params = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
        except (TypeError, ValueError):
            return None
        found |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return found  # this one takes no further keywords: the chain ends here
    return None


def _hints(target: Any) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for function in _constructors(target):
        try:
            for name, hint in typing.get_type_hints(function).items():
                hints.setdefault(name, hint)
        except Exception:  # an annotation that does not resolve: leave those parameters unchecked
            continue
    return hints


def check_target_node(node: Any, key: str) -> None:
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    try:
        target = _import(node._target_)
    except Exception as e:
        raise ConfigError(f"{key}._target_: cannot import '{node._target_}' ({type(e).__name__})") from e
    params = _parameters(target)
    if params is not None:
        if key == "loss" and "weighting" in node and "weighting" not in params:
            raise ConfigError(f"loss.weighting: {node._target_} takes no weighting; run it with ~weighting")
        _check_known(node.keys(), params, key)
    hints = _hints(target)
    for name in node:
        if name in HYDRA_KEYS:
            continue
        value = _value(node, name)
        if isinstance(value, DictConfig):
            check_target_node(value, f"{key}.{name}")
        elif name in hints:
            _check_type(value, hints[name], f"{key}.{name}")


def _check_type(value: Any, hint: Any, key: str) -> None:
    """Raise ConfigError unless value fits the annotation; annotations other than the plain scalar types pass."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) not in options:
            raise ConfigError(f"{key}: must be set, got null")
        return
    scalars = [o for o in options if o in (bool, int, float, str)]
    if len(scalars) < len([o for o in options if o is not type(None)]):
        return  # the annotation allows something richer (a list, a callable, ...): the constructor checks it
    for expected in scalars:
        if expected is bool and isinstance(value, bool):
            return
        if expected is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if expected is float and isinstance(value, int | float) and not isinstance(value, bool):
            return
        if expected is str and isinstance(value, str):
            return
    names = " or ".join({bool: "true or false", int: "an integer", float: "a number", str: "text"}[o] for o in scalars)
    raise ConfigError(f"{key}: must be {names}, got {value!r}")

"""What YAML and pydantic leave unsaid about a config file: duplicate keys, misspelled keys, a missing `type`.

PyYAML keeps the last of two equal keys without a word, and pydantic names a misspelled key by the
section it sits in and a discriminated union without its `type` as "Unable to extract tag". These
helpers turn each into a line that names the key and, where a known key is close, what was meant.
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel


def duplicate_keys(node: yaml.Node | None, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], int, int]]:
    """Every key given twice in one mapping: (path of the key, line of the repeat, line of the first)."""
    found: list[tuple[tuple[Any, ...], int, int]] = []
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in first_line:
                found.append((path + (key,), line, first_line[key]))
            else:
                first_line[key] = line
            found.extend(duplicate_keys(value_node, path + (key,)))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found.extend(duplicate_keys(item, path + (index,)))
    return found


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or an empty string when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, Annotated)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, dict):
        return [model for arg in get_args(annotation) for model in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _tag_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    if field is None:
        return None
    args = get_args(field.annotation)
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


def models_at(root: type[BaseModel], path: tuple[Any, ...], data: Any) -> list[type[BaseModel]]:
    """The models that the mapping at `path` of `data` may be (one, or a union's members)."""
    candidates: list[type[BaseModel]] = [root]
    node = data
    for step in path:
        if isinstance(step, int):
            node = node[step] if isinstance(node, list) and 0 <= step < len(node) else None
            continue
        fields = [model.model_fields[step] for model in candidates if step in model.model_fields]
        if not fields:
            return []
        candidates = _models_in(fields[0].annotation)
        node = node.get(step) if isinstance(node, dict) else None
        tag = node.get("type") if isinstance(node, dict) else None
        tagged = [model for model in candidates if _tag_of(model) == tag]
        if tagged:
            candidates = tagged
    return candidates


def union_tags(root: type[BaseModel], path: tuple[Any, ...], data: Any) -> list[str]:
    """The `type` values a discriminated union at `path` accepts."""
    parent, key = path[:-1], path[-1]
    tags: list[str] = []
    for model in models_at(root, parent, data):
        field = model.model_fields.get(key)
        if field is not None:
            tags.extend(tag for member in _models_in(field.annotation) if (tag := _tag_of(member)))
    return tags


def known_keys(root: type[BaseModel], path: tuple[Any, ...], data: Any) -> list[str]:
    """The keys the mapping at `path` may hold."""
    keys: list[str] = []
    for model in models_at(root, path, data):
        keys.extend(name for name in model.model_fields if name not in keys)
    return keys

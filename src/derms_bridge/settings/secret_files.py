"""Secrets given as files: `<name>_file: /run/secrets/x` beside any secret setting `<name>`,
as container platforms and vaults hand secrets over (Docker and Kubernetes secrets,
systemd's credentials, a vault agent's template).

The file's text replaces the `_file` key before the settings are validated, in the YAML
file and in the environment each on its own, so that an environment variable still wins
over the file's value whichever way each gives it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

SUFFIX = "_file"


class SecretFileError(Exception):
    """A `_file` secret that cannot be used; the message names the setting and the file,
    never what the file holds."""

    def __init__(self, location: tuple[str, ...], problem: str) -> None:
        self.location = location
        super().__init__(f"{'.'.join(location)}: {problem}")


def _members(annotation: Any) -> Iterator[Any]:
    """The types an annotation may hold: through Optional, unions, Annotated and containers."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _members(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            yield from _members(argument)
    else:
        yield annotation


def _is_secret(annotation: Any) -> bool:
    return any(member is SecretStr for member in _members(annotation))


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The settings models a value of this annotation is read as (the members of a union,
    the values of a mapping)."""
    found: list[type[BaseModel]] = []
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            found.append(member)
        elif typing.get_origin(member) in (dict, Mapping):
            found.extend(_models(typing.get_args(member)[1]))
    return found


def _mapping_of_models(annotation: Any) -> bool:
    return any(typing.get_origin(member) in (dict, Mapping) for member in _members(annotation))


def _read(location: tuple[str, ...], path_text: Any) -> str:
    if not isinstance(path_text, str | Path) or not str(path_text).strip():
        raise SecretFileError(location, "must be the path of a file")
    path = Path(path_text)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretFileError(location, f"{path} does not exist") from None
    except UnicodeDecodeError:
        raise SecretFileError(location, f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise SecretFileError(location, f"{path} cannot be read ({exc.strerror})") from None
    # Files written by `echo` or an editor end in a line break that is no part of the secret.
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise SecretFileError(location, f"{path} is empty")
    return value


def resolve_secret_files(
    models: list[type[BaseModel]], data: Any, location: tuple[str, ...] = ()
) -> Any:
    """`data` (one source's raw settings) with every `<secret>_file` key replaced by its
    secret read from the file; `models` are the settings classes `data` may be read as."""
    if not isinstance(data, dict):
        return data
    fields = {name: field for model in models for name, field in model.model_fields.items()}
    resolved: dict[str, Any] = {}
    for key, value in data.items():
        stem = key.removesuffix(SUFFIX) if isinstance(key, str) else None
        if stem and stem != key and stem in fields and _is_secret(fields[stem].annotation):
            if stem in data:
                raise SecretFileError((*location, key), f"give {stem} or {key}, not both")
            resolved[stem] = _read((*location, key), value)
            continue
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            resolved[key] = value
            continue
        inner = _models(field.annotation)
        if inner and _mapping_of_models(field.annotation) and isinstance(value, dict):
            resolved[key] = {
                name: resolve_secret_files(inner, each, (*location, key, str(name)))
                for name, each in value.items()
            }
        elif inner:
            resolved[key] = resolve_secret_files(inner, value, (*location, key))
        else:
            resolved[key] = value
    return resolved

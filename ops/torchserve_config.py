"""TorchServe's config.properties, parsed: the one place that reads and edits it.

The server launcher, the load tools and the tests each need a variant of the shipped file (private
loopback ports, other models, the model API on). Editing the text with regular expressions in each of
them broke on the multi-line ``models=`` value and hid typos; here the file is read once into logical
lines, comments and key order are kept, and only the lines that change are rewritten, so a written
file diffs against its template by exactly those lines.

Supported syntax (what TorchServe's Java ``Properties`` reads and these files use): ``key=value``
lines, ``#``/``!`` comments, blank lines, values continued with a trailing backslash, and backslash
escapes in values. Anything else raises ``ConfigError``.
"""

from __future__ import annotations

import json
import re
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

LOOPBACK = "127.0.0.1"
HTTP_APIS = ("inference", "management", "metrics")
GRPC_APIS = ("grpc_inference", "grpc_management")   # TorchServe 0.12 always opens them
KEY = re.compile(r"[A-Za-z0-9_.\-]+")
UNESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}

# model name -> version -> settings (marName, batchSize, ...), as in the models= JSON
Models = dict[str, dict[str, dict[str, Any]]]


class ConfigError(ValueError):
    """A config.properties this module cannot read or edit without guessing."""


@dataclass(frozen=True)
class Addresses:
    """The URLs of TorchServe's three HTTP APIs: what a client needs to reach the server."""
    inference: str
    management: str
    metrics: str


@dataclass(frozen=True)
class Ports:
    """The five ports one TorchServe opens: its three HTTP APIs and the gRPC pair it cannot switch off."""
    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int

    @classmethod
    def from_csv(cls, text: str) -> Ports:
        """``"18080,18081,18082,17070,17071"`` (the load tools' --ports) in field order."""
        parts = text.split(",")
        if len(parts) != len(HTTP_APIS) + len(GRPC_APIS):
            raise ValueError(f"need {len(HTTP_APIS) + len(GRPC_APIS)} ports (inference, management, metrics, "
                             f"gRPC inference, gRPC management), got {text!r}")
        return cls(*(int(part) for part in parts))


@dataclass
class _Line:
    """One logical line as written (its physical lines, newlines included) and its key if it is a property."""
    text: str
    key: str | None = None


def _continues(physical: str) -> bool:
    """An odd number of trailing backslashes continues the value on the next line (an even one is escaped)."""
    body = physical.rstrip("\r\n")
    return (len(body) - len(body.rstrip("\\"))) % 2 == 1


def _unescape(value: str) -> str:
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)",
                  lambda m: chr(int(m[1][1:], 16)) if len(m[1]) == 5 else UNESCAPES.get(m[1], m[1]), value)


def _escape(value: str) -> str:
    escaped = "".join(ESCAPES.get(char, char) for char in value)
    return "\\" + escaped if escaped.startswith(" ") else escaped   # a leading space would be stripped


def _check_models(models: object, source: str) -> Models:
    if not (isinstance(models, dict) and all(
            isinstance(versions, dict) and all(isinstance(settings, dict) for settings in versions.values())
            for versions in models.values())):
        raise ConfigError(f"{source}: models= must map model -> version -> settings, got {models!r:.200}")
    return models


def _model_of(load_entry: str) -> str:
    """The model a load_models entry starts: ``name=archive.mar`` or ``archive.mar``."""
    return load_entry.split("=", 1)[0].removesuffix(".mar")


class TorchServeConfig:
    """A config.properties as ordered logical lines; reads give Java's unescaped values, edits rewrite one line."""

    def __init__(self, lines: list[_Line], source: str) -> None:
        self._lines = lines
        self.source = source

    @classmethod
    def load(cls, path: Path) -> TorchServeConfig:
        return cls.parse(Path(path).read_text(), source=str(path))

    @classmethod
    def parse(cls, text: str, source: str = "<config.properties text>") -> TorchServeConfig:
        """Read ``text`` (a file, or a ConfigMap's value); ``source`` names it in errors."""
        physical = text.splitlines(keepends=True)
        lines: list[_Line] = []
        index = 0
        while index < len(physical):
            first = index
            stripped = physical[index].strip()
            if not stripped or stripped[0] in "#!":
                lines.append(_Line(physical[index]))
                index += 1
                continue
            while _continues(physical[index]) and index + 1 < len(physical):
                index += 1
            index += 1
            key, separator, _ = physical[first].strip().partition("=")
            key = key.rstrip()
            if not separator or not KEY.fullmatch(key):
                raise ConfigError(f"{source}, line {first + 1}: expected key=value, got {physical[first].rstrip()!r}")
            if any(line.key == key for line in lines):
                raise ConfigError(f"{source}, line {first + 1}: {key} is set twice")
            lines.append(_Line("".join(physical[first:index]), key))
        return cls(lines, source)

    def text(self) -> str:
        return "".join(line.text for line in self._lines)

    def write(self, path: Path) -> Path:
        path.write_text(self.text())
        return path

    def keys(self) -> list[str]:
        return [line.key for line in self._lines if line.key]

    def __contains__(self, key: str) -> bool:
        return self._find(key) is not None

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value as TorchServe reads it: continuations joined, escapes resolved."""
        line = self._find(key)
        if line is None:
            return default
        physical = line.text.splitlines()
        physical[1:] = [part.lstrip() for part in physical[1:]]   # a continuation's indent is not part of the value
        logical = "".join(part[:-1] for part in physical[:-1]) + physical[-1]
        return _unescape(logical.partition("=")[2].lstrip())

    def require(self, key: str) -> str:
        """The value, or a ConfigError naming the file: for keys the caller cannot do without."""
        value = self.get(key)
        if value is None:
            raise ConfigError(f"{self.source} has no {key}")
        return value

    __getitem__ = require

    def set(self, key: str, value: str) -> None:
        """Replace the key's line where it stands, or append it at the end."""
        self._put(key, f"{key}={_escape(value)}\n")

    def remove(self, key: str) -> None:
        line = self._find(key)
        if line is None:
            raise ConfigError(f"{self.source} has no {key} to remove")
        self._lines.remove(line)

    @property
    def addresses(self) -> Addresses:
        return Addresses(*(self.require(f"{api}_address") for api in HTTP_APIS))

    @property
    def ports(self) -> Ports:
        http = []
        for api, url in zip(HTTP_APIS, astuple(self.addresses)):
            port = urlsplit(url).port
            if port is None:
                raise ConfigError(f"{self.source}: {api}_address={url} names no port")
            http.append(port)
        grpc = []
        for api in GRPC_APIS:
            value = self.require(f"{api}_port")
            if not value.isdigit():
                raise ConfigError(f"{self.source}: {api}_port={value} is not a port number")
            grpc.append(int(value))
        return Ports(*http, *grpc)

    def move_to_loopback(self, ports: Ports) -> None:
        """Every API on 127.0.0.1 at ``ports``: a private server beside others (tests, benchmarks)."""
        for api in HTTP_APIS:
            self.set(f"{api}_address", f"http://{LOOPBACK}:{getattr(ports, api)}")
        for api in GRPC_APIS:
            self.set(f"{api}_address", LOOPBACK)
            self.set(f"{api}_port", str(getattr(ports, api)))

    @property
    def loaded_models(self) -> list[str]:
        """The models in load_models, which TorchServe starts (and ops.server waits for)."""
        return [_model_of(entry) for entry in self._load_entries()]

    @property
    def models(self) -> Models:
        """A copy of the models= JSON (empty without the key): edit it, then ``set_models``."""
        value = self.get("models")
        if value is None:
            return {}
        try:
            return _check_models(json.loads(value), self.source)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self.source}: models= is not JSON ({exc}): {value[:200]!r}") from None

    def set_models(self, models: Models) -> None:
        """Replace models= in place, one model per continued line as the shipped file writes it."""
        entries = [f"  {_escape(json.dumps(name))}: {_escape(json.dumps(versions))}"
                   for name, versions in _check_models(models, "set_models").items()]
        body = "\\\n" + ",\\\n".join(entries) + "\\\n" if entries else ""
        self._put("models", "models={" + body + "}\n")

    def add_model(self, name: str, like: str, version: str | None = None, **settings: Any) -> None:
        """Serve ``name`` from ``name``.mar with the settings of ``like``'s first version, ``settings`` overriding
        them, under ``version`` (default: ``like``'s); it is appended to load_models."""
        models = self.models
        if name in models:
            raise ConfigError(f"{self.source}: model {name} is already configured")
        if like not in models:
            raise ConfigError(f"{self.source}: no model {like} to copy (models= has {', '.join(models) or 'none'})")
        like_version, like_settings = next(iter(models[like].items()))
        entry = {**like_settings, "marName": f"{name}.mar", **settings}
        models[name] = {version or like_version: entry}
        self.set_models(models)
        self.set("load_models", ",".join([*self._load_entries(), entry["marName"]]))

    def remove_model(self, name: str) -> None:
        """Neither configure nor start ``name`` (its models= entry and load_models entry go)."""
        models = self.models
        if name not in models:
            raise ConfigError(f"{self.source}: no model {name} to remove (models= has {', '.join(models) or 'none'})")
        del models[name]
        self.set_models(models)
        if "load_models" in self:
            self.set("load_models", ",".join(e for e in self._load_entries() if _model_of(e) != name))

    def without_models(self) -> None:
        """Start no model: load_models empty and no models= (models are then registered through the API)."""
        self.set("load_models", "")
        if "models" in self:
            self.remove("models")

    def _load_entries(self) -> list[str]:
        return [entry.strip() for entry in (self.get("load_models") or "").split(",") if entry.strip()]

    def _find(self, key: str) -> _Line | None:
        return next((line for line in self._lines if line.key == key), None)

    def _put(self, key: str, text: str) -> None:
        if not KEY.fullmatch(key):
            raise ConfigError(f"{key!r} is not a property key")
        line = self._find(key)
        if line is not None:
            line.text = text
            return
        if self._lines and not self._lines[-1].text.endswith("\n"):
            self._lines[-1].text += "\n"
        self._lines.append(_Line(text, key))


def open_model_api_without_models(config: TorchServeConfig) -> None:
    """The operator who turns the model API on and registers models by hand (the operations and security
    tests, and the scaling benchmark, which re-registers the model with other batching)."""
    config.set("enable_model_api", "true")
    config.without_models()


def render_config(template: Path, destination: Path, ports: Ports,
                  edit: Callable[[TorchServeConfig], None] | None = None) -> Path:
    """``template`` on private loopback ``ports``, edited by ``edit``, written to ``destination``: a server of
    its own for a test or a benchmark, configured like the shipped one otherwise."""
    config = TorchServeConfig.load(template)
    config.move_to_loopback(ports)
    if edit:
        edit(config)
    return config.write(destination)

# SPDX-License-Identifier: GPL-3.0-or-later
"""The configuration: a TOML file read once into frozen dataclasses.

Every key, with its default and a comment, is in config.example.toml. Unknown keys and values of the
wrong type or range are refused at start with a message naming the key, so a typo never silently
falls back to a default. Relative paths are resolved against the directory of the config file.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration problem, with the offending key named in the message."""


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///var/casemail.db"


@dataclass(frozen=True)
class StorageSettings:
    blobs: str = "var/blobs"
    secret_key_file: str = "var/secret.key"


@dataclass(frozen=True)
class SupportSettings:
    addresses: list[str] = field(default_factory=lambda: ["support@example.com"])
    name: str = "Support"
    secret_key: str = ""


@dataclass(frozen=True)
class SmtpSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2525
    hostname: str = "casemail.localhost"
    max_message_size: int = 26_214_400


@dataclass(frozen=True)
class OutboundSettings:
    transport: str = "maildir"
    maildir: str = "var/sent"
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    tls: bool = False
    username: str = ""
    password: str = ""
    timeout: float = 30.0
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    give_up_after_hours: float = 120.0
    poll_seconds: float = 5.0


@dataclass(frozen=True)
class StaffSettings:
    addresses: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    trusted_authserv_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TemplateSettings:
    override_dir: str = ""


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    support: SupportSettings = field(default_factory=SupportSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    staff: StaffSettings = field(default_factory=StaffSettings)
    templates: TemplateSettings = field(default_factory=TemplateSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    # The directory relative paths are resolved against (the config file's directory).
    base_dir: Path = field(default_factory=Path.cwd)

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def database_url(self) -> str:
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix):]))
        return url


def load_settings(path: Path) -> Settings:
    """Read and validate a config file; raise ConfigError naming the key on any problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return settings_from_dict(data, base_dir=path.resolve().parent)


def settings_from_dict(data: dict[str, Any], *, base_dir: Path) -> Settings:
    sections: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(Settings) if f.name != "base_dir"}
    for name, value in data.items():
        if name not in fields:
            raise ConfigError(f"{name}: unknown section (known: {', '.join(sorted(fields))})")
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: must be a table ([{name}])")
        section_type = typing.get_type_hints(Settings)[name]
        sections[name] = _build_section(name, section_type, value)
    settings = Settings(**sections, base_dir=base_dir)
    _validate(settings)
    return settings


def _build_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{section}.{key}: unknown key (known: {known})")
        kwargs[key] = _coerce(f"{section}.{key}", hints[key], value)
    return cls(**kwargs)


def _coerce(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: must be a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", item, v) for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string, got {value!r}")
        return value
    if isinstance(hint, types.UnionType):  # pragma: no cover - no such keys yet
        return value
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")


def _validate(s: Settings) -> None:
    if not s.support.addresses:
        raise ConfigError("support.addresses: at least one support address is needed")
    for i, address in enumerate(s.support.addresses):
        if address.count("@") != 1 or "+" in address.split("@")[0] or " " in address:
            raise ConfigError(
                f"support.addresses[{i}]: {address!r} is not a plain address like support@example.com"
            )
    for key, port in (("smtp.port", s.smtp.port), ("outbound.port", s.outbound.port)):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{key}: must be between 0 and 65535, got {port}")
    if s.smtp.max_message_size < 1024:
        raise ConfigError(f"smtp.max_message_size: must be at least 1024 bytes, got {s.smtp.max_message_size}")
    if s.outbound.transport not in ("maildir", "smtp"):
        raise ConfigError(f"outbound.transport: must be 'maildir' or 'smtp', got {s.outbound.transport!r}")
    if s.outbound.starttls and s.outbound.tls:
        raise ConfigError("outbound.tls: choose either tls (implicit) or starttls, not both")
    if s.outbound.timeout <= 0:
        raise ConfigError("outbound.timeout: must be positive")
    if s.outbound.retry_base_seconds <= 0 or s.outbound.retry_max_seconds < s.outbound.retry_base_seconds:
        raise ConfigError("outbound.retry_max_seconds: must be at least outbound.retry_base_seconds (> 0)")
    if s.outbound.poll_seconds <= 0:
        raise ConfigError("outbound.poll_seconds: must be positive")
    if not (s.database.url.startswith("sqlite:///") or s.database.url.startswith("postgresql")):
        raise ConfigError(f"database.url: must be a sqlite:/// or postgresql URL, got {s.database.url!r}")
    if s.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"logging.level: must be DEBUG, INFO, WARNING or ERROR, got {s.logging.level!r}")
    for i, domain in enumerate(s.staff.domains):
        if "@" in domain or not domain:
            raise ConfigError(f"staff.domains[{i}]: a domain such as example.com, got {domain!r}")

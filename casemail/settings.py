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
    spool: str = "var/spool.sqlite"
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
    max_recipients: int = 100
    max_connections: int = 100
    max_concurrent_data: int = 100
    max_data_memory: int = 104_857_600
    idle_timeout: float = 300.0
    max_commands: int = 1000
    max_bad_commands: int = 20
    tls_cert: str = ""
    tls_key: str = ""
    require_starttls: bool = False
    auth_users: str = ""
    auth_required: bool = False

    def validate(self) -> None:
        """Refuse limits that would break the listener, naming the key (see config.example.toml)."""
        if self.max_message_size < 1024:
            raise ConfigError(f"smtp.max_message_size: must be at least 1024 bytes, got {self.max_message_size}")
        for key in ("max_recipients", "max_connections", "max_concurrent_data", "max_bad_commands"):
            if getattr(self, key) < 1:
                raise ConfigError(f"smtp.{key}: must be at least 1, got {getattr(self, key)}")
        if self.max_data_memory < self.max_message_size:
            raise ConfigError(f"smtp.max_data_memory: must be at least smtp.max_message_size "
                              f"({self.max_message_size}), got {self.max_data_memory}")
        if self.max_commands < 10:
            raise ConfigError(f"smtp.max_commands: must be at least 10 (one message takes five), "
                              f"got {self.max_commands}")
        if not 0 < self.idle_timeout <= 3600:
            raise ConfigError(f"smtp.idle_timeout: must be more than 0 and at most 3600 seconds, "
                              f"got {self.idle_timeout}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("smtp.tls_key: set both smtp.tls_cert and smtp.tls_key, or neither")
        if self.require_starttls and not self.tls_cert:
            raise ConfigError("smtp.require_starttls: needs smtp.tls_cert and smtp.tls_key")
        if self.auth_users and not self.tls_cert:
            raise ConfigError("smtp.auth_users: AUTH is only offered after STARTTLS; "
                              "set smtp.tls_cert and smtp.tls_key")
        if self.auth_required and not self.auth_users:
            raise ConfigError("smtp.auth_required: needs smtp.auth_users")


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
    connections: int = 4


@dataclass(frozen=True)
class StaffRouteSettings:
    products: list[str] = field(default_factory=list)
    severities: list[int] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StaffSettings:
    addresses: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    trusted_authserv_ids: list[str] = field(default_factory=list)
    routes: list[StaffRouteSettings] = field(default_factory=list)


@dataclass(frozen=True)
class LimitSettings:
    new_cases_per_hour: int = 20
    max_attachments: int = 50
    max_attachment_size: int = 20_971_520
    max_attachments_total: int = 52_428_800


@dataclass(frozen=True)
class TemplateSettings:
    override_dir: str = ""


@dataclass(frozen=True)
class LmtpSettings:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8024
    socket: str = ""
    socket_mode: int = 0o660
    hostname: str = "casemail.localhost"
    max_message_size: int = 26_214_400
    trusted: bool = False


@dataclass(frozen=True)
class ImapMailboxSettings:
    name: str = ""
    host: str = "127.0.0.1"
    port: int = 993
    tls: bool = True
    user: str = ""
    password: str = ""
    oauth2_token_file: str = ""
    folder: str = "INBOX"
    after: str = "move"
    processed_folder: str = "Processed"
    refused_folder: str = "Refused"
    recipient: str = ""
    poll_seconds: float = 60.0
    timeout: float = 30.0
    max_backoff_seconds: float = 300.0
    max_message_size: int = 26_214_400


@dataclass(frozen=True)
class ImapSettings:
    mailboxes: list[ImapMailboxSettings] = field(default_factory=list)


@dataclass(frozen=True)
class SchedulesSettings:
    # Each schedule is off until configured: 0 (days, minutes) or -1 (hours) means off.
    check_seconds: float = 60.0
    reminder_days: float = 0.0
    autoclose_days: float = 0.0
    escalation_minutes: float = 0.0
    escalation_repeat_minutes: float = 0.0
    oncall: list[str] = field(default_factory=list)
    staff_digest_hour: int = -1
    customer_digest_hour: int = -1

    def validate(self) -> None:
        """Refuse values that would make a schedule misbehave, naming the key (see config.example.toml)."""
        if not 0 < self.check_seconds <= 3600:
            raise ConfigError(f"schedules.check_seconds: must be more than 0 and at most 3600 seconds, "
                              f"got {self.check_seconds}")
        for key in ("reminder_days", "autoclose_days", "escalation_minutes", "escalation_repeat_minutes"):
            if getattr(self, key) < 0:
                raise ConfigError(f"schedules.{key}: must be 0 (off) or positive, got {getattr(self, key)}")
        if 0 < self.autoclose_days <= self.reminder_days:
            raise ConfigError(f"schedules.autoclose_days: must be more than schedules.reminder_days "
                              f"({self.reminder_days}), or 0 for off, got {self.autoclose_days}")
        if self.escalation_minutes > 0 and not self.oncall:
            raise ConfigError("schedules.oncall: escalation_minutes is set, so at least one on-call address "
                              "is needed")
        for i, address in enumerate(self.oncall):
            if address.count("@") != 1 or " " in address:
                raise ConfigError(f"schedules.oncall[{i}]: {address!r} is not an address")
        for key in ("staff_digest_hour", "customer_digest_hour"):
            if not -1 <= getattr(self, key) <= 23:
                raise ConfigError(f"schedules.{key}: must be an hour from 0 to 23 (UTC), or -1 for off, "
                                  f"got {getattr(self, key)}")


@dataclass(frozen=True)
class IntakeSettings:
    processes: int = 2
    nice: int = 10

    def validate(self) -> None:
        if not 0 <= self.processes <= 64:
            raise ConfigError(f"intake.processes: must be between 0 and 64, got {self.processes}")
        if not 0 <= self.nice <= 19:
            raise ConfigError(f"intake.nice: must be between 0 and 19, got {self.nice}")


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
    limits: LimitSettings = field(default_factory=LimitSettings)
    templates: TemplateSettings = field(default_factory=TemplateSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    lmtp: LmtpSettings = field(default_factory=LmtpSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    schedules: SchedulesSettings = field(default_factory=SchedulesSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
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
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be a table, got {value!r}")
        return _build_section(key, hint, value)
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
    s.smtp.validate()
    s.schedules.validate()
    s.intake.validate()
    if s.schedules.staff_digest_hour >= 0 and not s.staff.addresses:
        raise ConfigError("schedules.staff_digest_hour: the staff digest goes to staff.addresses, which is empty")
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
    if not 1 <= s.outbound.connections <= 64:
        raise ConfigError(f"outbound.connections: must be from 1 to 64, got {s.outbound.connections}")
    if not (s.database.url.startswith("sqlite:///") or s.database.url.startswith("postgresql")):
        raise ConfigError(f"database.url: must be a sqlite:/// or postgresql URL, got {s.database.url!r}")
    if s.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"logging.level: must be DEBUG, INFO, WARNING or ERROR, got {s.logging.level!r}")
    for key in ("new_cases_per_hour", "max_attachments", "max_attachment_size", "max_attachments_total"):
        if getattr(s.limits, key) < 1:
            raise ConfigError(f"limits.{key}: must be at least 1, got {getattr(s.limits, key)}")
    for i, route in enumerate(s.staff.routes):
        key = f"staff.routes[{i}]"
        if not route.addresses:
            raise ConfigError(f"{key}.addresses: a route needs at least one address")
        for j, address in enumerate(route.addresses):
            if address.count("@") != 1 or " " in address:
                raise ConfigError(f"{key}.addresses[{j}]: {address!r} is not an address")
        for j, severity in enumerate(route.severities):
            if not 1 <= severity <= 4:
                raise ConfigError(f"{key}.severities[{j}]: severities run from 1 to 4, got {severity}")
        if not route.products and not route.severities:
            raise ConfigError(f"{key}: give products, severities or both (a route matching every case "
                              "is what staff.addresses already is)")
    for i, domain in enumerate(s.staff.domains):
        if "@" in domain or not domain:
            raise ConfigError(f"staff.domains[{i}]: a domain such as example.com, got {domain!r}")
    _validate_mail_transports(s)


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _validate_mail_transports(s: Settings) -> None:
    """The [lmtp] and [imap] sections (see docs/transports.md)."""
    if not 0 <= s.lmtp.port <= 65535:
        raise ConfigError(f"lmtp.port: must be between 0 and 65535, got {s.lmtp.port}")
    if not 0 <= s.lmtp.socket_mode <= 0o777:
        raise ConfigError(f"lmtp.socket_mode: must be a file mode such as 0o660, got {s.lmtp.socket_mode}")
    if s.lmtp.max_message_size < 1024:
        raise ConfigError(f"lmtp.max_message_size: must be at least 1024 bytes, got {s.lmtp.max_message_size}")
    names: set[str] = set()
    for i, m in enumerate(s.imap.mailboxes):
        key = f"imap.mailboxes[{i}]"
        if not m.name or m.name in names:
            raise ConfigError(f"{key}.name: each mailbox needs a unique name, got {m.name!r}")
        names.add(m.name)
        if not m.host or not m.user:
            raise ConfigError(f"{key}.{'host' if not m.host else 'user'}: must not be empty")
        if not 1 <= m.port <= 65535:
            raise ConfigError(f"{key}.port: must be between 1 and 65535, got {m.port}")
        # aioimaplib has no STARTTLS, so a plain connection would send the password in the clear.
        if not m.tls and m.host not in _LOOPBACK:
            raise ConfigError(f"{key}.tls: plain IMAP is allowed only to a loopback host, not {m.host!r}")
        if bool(m.password) == bool(m.oauth2_token_file):
            raise ConfigError(f"{key}.password: set exactly one of password and oauth2_token_file")
        if m.after not in ("move", "flag"):
            raise ConfigError(f"{key}.after: must be 'move' or 'flag', got {m.after!r}")
        folders = {"folder": m.folder, "processed_folder": m.processed_folder, "refused_folder": m.refused_folder}
        for name, value in folders.items():
            if not value or any(c in value for c in "\r\n\"*%"):
                raise ConfigError(f"{key}.{name}: not a usable folder name: {value!r}")
        if m.folder in (m.processed_folder, m.refused_folder):
            raise ConfigError(f"{key}.processed_folder: must differ from the folder that is read")
        if m.recipient and m.recipient.count("@") != 1:
            raise ConfigError(f"{key}.recipient: {m.recipient!r} is not an address")
        for name, number in (("poll_seconds", m.poll_seconds), ("timeout", m.timeout),
                             ("max_backoff_seconds", m.max_backoff_seconds)):
            if number <= 0:
                raise ConfigError(f"{key}.{name}: must be positive, got {number}")
        if m.max_message_size < 1024:
            raise ConfigError(f"{key}.max_message_size: must be at least 1024 bytes, got {m.max_message_size}")

"""Configuration: loaded once from a YAML file, validated, frozen, passed explicitly.

The file is found by ``--config FILE``, else ``$STORYWATCH_CONFIG``, else ``storywatch.yaml`` in
the user config directory; when none exists the packaged default (the LongCat watchlist) is used.
Secrets are written as ``${ENV_VAR}`` references and resolved from the environment at load time;
they are held as ``SecretStr`` so they never appear in reprs or logs.

Validation errors name the file, the key path (``sources[3].url``), its line, and what is wrong.

Kept whole past ~450 lines on purpose: it is the one reference of every setting (the schema) and
the loader that names a bad key's file and line; both share the location helpers, and a reader
looking up a key should find its type, default and error in one file. What a URL must be to be
accepted (and the messages that say so without a secret) is ``crawler.bounds.urls``.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from crawler.bounds import redact
from crawler.bounds.urls import check_url, source_url_problem
from crawler.errors import BlockedURLError, ConfigError
from crawler.types import SourceSpec

ENV_CONFIG = "STORYWATCH_CONFIG"
ENV_DATA_DIR = "STORYWATCH_DATA_DIR"
APP = "storywatch"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def parse_duration(value: Any) -> float:
    """``90``, ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 2h")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 15m, 2h, 1d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]

WHEN_HINT = "use a date (2026-11-20), an ISO time or a duration (24h, 7d)"


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """``2026-11-20``, an ISO time, or a duration ago (``24h``, ``7d``) -> an aware datetime.

    ValueError (say ``WHEN_HINT``) when it is none of these; the CLI and the web app word it.
    """
    try:
        dt = datetime.fromisoformat(value)
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    except ValueError:
        pass
    return (now or datetime.now(UTC)) - timedelta(seconds=parse_duration(value))


def check_listen(value: str) -> str:
    """``value`` when it is ``host:port`` with a port from 0 (any free one) to 65535, else ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535 or any(c in host for c in "/@?# "):
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:9465; port 0 picks a free one)")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FetchConfig(_Model):
    user_agent: str = "storywatch/0.1 (+https://github.com/storywatch/storywatch)"
    connect_timeout: Duration = 10.0
    read_timeout: Duration = 20.0
    deadline: Duration = 60.0
    max_body_mb: float = Field(10.0, gt=0)
    max_redirects: int = Field(5, ge=0, le=20)
    concurrency: int = Field(32, ge=1)
    per_host_concurrency: int = Field(2, ge=1)
    per_host_min_gap: Duration = 1.0
    respect_robots: bool = True
    allow_private_networks: tuple[str, ...] = ()
    article_concurrency: int = Field(16, ge=1)
    cpu_budget: Duration = Field(5.0, gt=0)  # parse + extract of one document, in a worker process
    max_entries: int = Field(1000, ge=1)  # new feed entries taken per poll, newest first


def validate_selector(selector: str) -> None:
    """ConfigError (key "selector") when selectolax cannot parse ``selector`` as CSS."""
    try:
        LexborHTMLParser("<p></p>").css(selector)
    except SelectolaxError as exc:
        raise ConfigError(f"invalid CSS selector {selector!r}: {exc}", key="selector") from exc


class SourceConfig(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")
    kind: Literal["feed", "page"]
    url: str
    interval: Duration = 900.0
    min_interval: Duration | None = None
    max_interval: Duration | None = None
    selector: str | None = None
    tags: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fetch_articles: bool = True
    backfill_query: str | None = None
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        problem = source_url_problem(v)
        if problem:
            raise ValueError(problem)
        redact.register(urlsplit(v).password)  # credentials in a source URL are a secret too
        return v

    @field_validator("ignore")
    @classmethod
    def _regexes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for pat in v:
            try:
                re.compile(pat)
            except re.error as exc:
                raise ValueError(f"ignore pattern {pat!r} is not a valid regular expression: {exc}") from exc
        return v

    @model_validator(mode="after")
    def _page_needs_selector(self) -> SourceConfig:
        if self.kind == "page" and not self.selector:
            raise ValueError("a page source needs a CSS `selector` for the region to watch")
        if self.selector:
            try:
                validate_selector(self.selector)
            except ConfigError as exc:
                raise ValueError(f"selector {self.selector!r} is not a valid CSS selector: {exc}") from exc
        return self

    def spec(self) -> SourceSpec:
        return SourceSpec(
            id=self.id,
            kind=self.kind,
            url=self.url,
            interval=self.interval,
            min_interval=self.min_interval if self.min_interval is not None else min(60.0, self.interval),
            max_interval=self.max_interval
            if self.max_interval is not None
            else max(6 * 3600.0, self.interval),
            selector=self.selector,
            tags=self.tags,
            ignore_patterns=self.ignore,
            fetch_articles=self.fetch_articles,
            backfill_query=self.backfill_query,
            enabled=self.enabled,
        )


class ExtractConfig(_Model):
    max_depth: int = Field(512, ge=32, le=100_000)  # element nesting cap, checked before parsing


class RulesConfig(_Model):
    paths: tuple[str, ...] = ("builtin:",)  # "builtin:" = the packaged rule pack


class DedupConfig(_Model):
    num_perm: int = Field(120, ge=16, le=512)
    bands: int = Field(40, ge=2)
    shingle_words: int = Field(5, ge=1, le=12)
    shingle_chars: int = Field(4, ge=1, le=12)  # for Chinese and other unspaced scripts
    threshold: float = Field(0.4, gt=0, le=1)  # estimated Jaccard needed to join a story
    tracking_params: tuple[str, ...] = ()  # added to the built-in list

    @model_validator(mode="after")
    def _layout(self) -> DedupConfig:
        if self.num_perm % self.bands:
            raise ValueError(f"bands ({self.bands}) must divide num_perm ({self.num_perm})")
        if self.num_perm // self.bands > 48:
            raise ValueError("at most 48 rows per band: raise `bands` or lower `num_perm`")
        return self


def _repeat_interval(value: Any) -> float:
    """A repeat interval: 0 or more seconds (``-6h`` is refused as negative, not as "not a duration")."""
    text = str(value).strip() if not isinstance(value, bool) else ""
    seconds = -1.0 if text.startswith("-") else parse_duration(value)
    if seconds < 0:
        raise ValueError(
            f"{value!r} is negative: repeat_interval is 0 (never repeat) or a duration such as 6h"
        )
    return seconds


class ChannelConfig(_Model):
    """One alert channel. Which keys apply depends on ``type``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["slack", "email", "webhook", "console", "apprise"]
    enabled: bool = True
    mode: Literal["immediate", "digest"] = "immediate"
    digest: Literal["hourly", "daily"] = "daily"
    digest_at: str = "08:00"  # local time for daily digests
    timezone: str = "UTC"
    quiet_hours: str | None = None  # e.g. "22:00-07:00", local time
    rate_per_second: float = Field(1.0, gt=0)
    max_tries: int = Field(8, ge=1)
    timeout: Duration = 15.0
    template: str | None = None  # path to a Jinja2 template overriding the default
    repeat_interval: Duration | None = None  # None = alerts.repeat_interval; 0 = never repeat here
    # slack / webhook
    url: SecretStr | None = None
    secret: SecretStr | None = None  # webhook HMAC key
    # email
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    security: Literal["ssl", "starttls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    ca_file: str | None = None  # PEM CA bundle trusted for this server's TLS certificate (not the system's)
    # apprise
    urls: tuple[SecretStr, ...] = ()

    @field_validator("repeat_interval", mode="before")
    @classmethod
    def _repeat_not_negative(cls, v: Any) -> Any:
        return v if v is None else _repeat_interval(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if v is not None and info.data.get("enabled", True):  # disabled: ${VAR}s are left unexpanded
            redact.register_url(v.get_secret_value())
            check_url(v.get_secret_value(), secret=True)
        return v

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: tuple[SecretStr, ...], info: ValidationInfo) -> tuple[SecretStr, ...]:
        for url in v if info.data.get("enabled", True) else ():
            redact.register_url(url.get_secret_value())
            check_url(url.get_secret_value(), secret=True, schemes=None)
        return v

    @field_validator("secret", "password")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            redact.register(v.get_secret_value())
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or any(c in v for c in "/@?# \t")):
            raise ValueError("not a host name or address (no scheme, path, user info): e.g. smtp.example.org")
        return v

    @model_validator(mode="after")
    def _required(self) -> ChannelConfig:
        need = {
            "slack": ("url",),
            "webhook": ("url",),
            "email": ("host", "sender", "recipients"),
            "apprise": ("urls",),
            "console": (),
        }[self.type]
        missing = [k for k in need if not getattr(self, k)]
        if missing and self.enabled:
            raise ValueError(f"a {self.type} channel needs: {', '.join(missing)}")
        return self


class RouteConfig(_Model):
    rules: tuple[str, ...] = ("*",)  # rule id globs
    severity: tuple[str, ...] = ()  # empty = any
    labels: Mapping[str, str] = Field(default_factory=dict)
    channels: tuple[str, ...]


class RetryBackoff(_Model):
    """Waits between tries of a delivery that failed for now: first, first*factor, ... up to cap."""

    first: Duration = 30.0
    factor: float = Field(2.0, ge=1)
    cap: Duration = 3600.0

    @model_validator(mode="after")
    def _ordered(self) -> RetryBackoff:
        if self.first <= 0 or self.cap < self.first:
            raise ValueError(f"need 0 < first <= cap (first {self.first:g}s, cap {self.cap:g}s)")
        return self


class AlertsConfig(_Model):
    channels: Mapping[str, ChannelConfig] = Field(
        default_factory=lambda: {"console": ChannelConfig(type="console")}
    )
    routes: tuple[RouteConfig, ...] = ()  # empty = every rule to every enabled channel
    group_by: tuple[Literal["rule", "story", "severity"], ...] = ("rule", "story")
    repeat_interval: Duration = 0.0  # 0 = never send "still developing" repeats
    notify_updates: bool = True  # "now reported by N sources" updates
    relay_interval: Duration = 5.0
    lease: Duration = 120.0
    retry_backoff: RetryBackoff = Field(default_factory=RetryBackoff)  # temporary delivery failures
    health_channel: str | None = None  # channel receiving source health notices

    @field_validator("repeat_interval", mode="before")
    @classmethod
    def _repeat_not_negative(cls, v: Any) -> Any:
        return _repeat_interval(v)

    def repeat_interval_for(self, channel: str) -> float:
        """Seconds between "still developing" repeats on ``channel`` (its own setting, else the global)."""
        own = self.channels[channel].repeat_interval
        return self.repeat_interval if own is None else own

    @model_validator(mode="after")
    def _routes_known(self) -> AlertsConfig:
        for i, route in enumerate(self.routes):
            for ch in route.channels:
                if ch not in self.channels:
                    raise ValueError(f"routes[{i}] names unknown channel {ch!r}")
        if self.health_channel and self.health_channel not in self.channels:
            raise ValueError(f"health_channel names unknown channel {self.health_channel!r}")
        return self


class DaemonConfig(_Model):
    # "127.0.0.1:9465" serves the web dashboard, the JSON API, /healthz and /metrics; the old name
    # ``daemon.metrics`` is accepted as an alias
    http: str | None = Field(None, validation_alias=AliasChoices("http", "metrics"))
    log_format: Literal["human", "json"] = "human"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_deadline: Duration = 20.0
    watch_files: bool = True
    misfire_grace: Duration = 300.0
    startup_spread: Duration = 60.0  # new and overdue sources' first polls spread over this (0 = all at once)
    backoff_cap: Duration | None = None  # longest wait between retries of a failing source (default: 1h)

    @field_validator("http")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        return v if v is None else check_listen(v)


class WebConfig(_Model):
    """The web dashboard and JSON API (``storywatch web``, or the daemon's ``daemon.http``)."""

    listen: str = "127.0.0.1:8087"  # `storywatch web` without --listen
    token: SecretStr | None = None  # required to listen beyond loopback; write it as ${ENV_VAR}
    read_only: bool = False  # no silences, no retries from the web

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return check_listen(v)

    @field_validator("token")
    @classmethod
    def _token_strength(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("web.token must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        if v is not None:
            redact.register(v.get_secret_value())  # masked in every log line and output
        return v


class BackfillConfig(_Model):
    cdx_url: str = "https://web.archive.org/cdx/search/cdx"
    snapshot_url: str = "https://web.archive.org/web/{timestamp}id_/{url}"
    rate: float = Field(2.0, gt=0)  # requests per second, overall
    max_pages: int = Field(50, ge=1)  # archive/paged-feed pages per source
    slice: Duration = 86400.0  # date-slice width for search feeds

    @field_validator("cdx_url")
    @classmethod
    def _cdx(cls, v: str) -> str:
        return check_url(v)

    @field_validator("snapshot_url")
    @classmethod
    def _snapshot(cls, v: str) -> str:
        if "{url}" not in v:
            raise ValueError(f"{v!r} needs a {{url}} placeholder (and usually {{timestamp}})")
        check_url(v.replace("{timestamp}", "20260101000000").replace("{url}", "https://example.org/"))
        return v


class ScaleConfig(_Model):
    """Scale-out mode (with ``broker``): the scheduler's dispatch of polls to workers."""

    lease: Duration = Field(300.0, gt=0)  # a dispatched poll's lease: a lost message waits this long
    batch: int = Field(500, ge=1)  # sources claimed per dispatch round
    tick: Duration = Field(1.0, gt=0)  # seconds between dispatch rounds
    processes: int = Field(2, ge=1)  # `storywatch worker` defaults
    threads: int = Field(8, ge=1)


class Settings(_Model):
    version: Literal[1] = 1
    database: str | None = None
    broker: str | None = None  # redis://127.0.0.1:6379/0: scale-out mode (crawler.scale); unset: embedded
    data_dir: str | None = None
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    backfill: BackfillConfig = Field(default_factory=BackfillConfig)
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    sources: tuple[SourceConfig, ...] = ()
    # not from the file: where it was loaded from
    path: str | None = Field(default=None, exclude=True)

    @field_validator("database")
    @classmethod
    def _database(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(v)
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL (e.g. sqlite:////path/storywatch.db or postgresql+psycopg://user@host/db)"
            ) from None
        redact.register(url.password if isinstance(url.password, str) else None)
        if url.port is not None and not 1 <= url.port <= 65535:
            raise ValueError("not a valid database URL: the port must be a number from 1 to 65535")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> Settings:
        seen: set[str] = set()
        for i, src in enumerate(self.sources):
            if src.id in seen:
                raise ValueError(f"sources[{i}].id {src.id!r} is used twice")
            seen.add(src.id)
        return self

    @field_validator("broker")
    @classmethod
    def _redis_broker(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{v!r}: the broker is a Redis URL (redis://host:6379/0, rediss://, unix://)")
        return v

    @property
    def database_url(self) -> str:
        if self.database:
            return self.database
        return f"sqlite:///{Path(self.data_path) / 'storywatch.db'}"

    @property
    def data_path(self) -> str:
        return self.data_dir or os.environ.get(ENV_DATA_DIR) or platformdirs.user_data_dir(APP)

    def source_specs(self) -> tuple[SourceSpec, ...]:
        return tuple(s.spec() for s in self.sources if s.enabled)

    def rule_paths(self) -> tuple[Path, ...]:
        from rules.paths import PACK_DIR

        base = Path(self.path).parent if self.path else Path.cwd()
        out = []
        for p in self.rules.paths:
            out.append(PACK_DIR if p.startswith("builtin:") else (base / Path(p).expanduser()))
        return tuple(out)


# ---------------------------------------------------------------------------- loading


def default_config_text() -> str:
    return resources.files("crawler.data").joinpath("default_config.yaml").read_text("utf-8")


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "storywatch.yaml"


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use, or None for the packaged default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    path = default_config_path()
    return path if path.exists() else None


def load_settings(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Settings:
    """Load and validate; raises ConfigError naming file, key, line and problem."""
    found = find_config(path)
    name = str(found) if found else "<default config>"
    if found is not None:
        try:
            text = found.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file: {exc.strerror or exc}", file=name) from exc
    else:
        text = default_config_text()
    return parse_settings(text, name=name, env=os.environ if env is None else env, path=found)


def parse_settings(
    text: str, *, name: str = "<config>", env: Mapping[str, str] | None = None, path: Path | None = None
) -> Settings:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}invalid YAML: {getattr(exc, 'problem', exc)}", file=name) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of settings", file=name)
    try:
        raw = _expand_env(raw, env or {}, ())
    except _MissingEnv as exc:
        line = _line_of(node, exc.loc)
        raise ConfigError(
            f"{_fmt_line(line)}environment variable {exc.var} is not set (export it, or disable this entry)",
            file=name,
            key=_fmt_loc(exc.loc),
        ) from None
    if path is not None:
        raw["path"] = str(path)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem(node, err) for err in exc.errors()]
        if len(problems) == 1:
            key, text = problems[0]
            raise ConfigError(text, file=name, key=key) from None
        listed = "\n".join(f"  {name}:{key}: {text}" for key, text in problems)
        raise ConfigError(f"{len(problems)} problems:\n{listed}", file=name) from None


def _problem(node: yaml.Node | None, err: Any) -> tuple[str, str]:
    """(key path, "line N: what is wrong") for one pydantic error; unknown keys get "did you mean"."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc[:-1]), n=1, cutoff=0.6)
        msg = (
            f"unknown setting: did you mean `{close[0]}`?"
            if close
            else "unknown setting (check the spelling; see `storywatch init` for every key)"
        )
    return _fmt_loc(loc), f"{_fmt_line(_line_of(node, loc))}{msg}"


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The setting names allowed at ``loc`` (a path into Settings: keys, list indexes, channel names)."""
    model: Any = Settings
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if isinstance(part, str) and part in fields:  # else an index into sources or a channel's name
            model = _item_model(fields[part].annotation)
    fields = getattr(model, "model_fields", {})
    return [n for n, f in fields.items() if not f.exclude]


def _item_model(annotation: Any) -> Any:
    """The model in ``FetchConfig``, ``tuple[SourceConfig, ...]`` or ``Mapping[str, ChannelConfig]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(typing.get_args(annotation)):
        found = _item_model(arg)
        if found is not None:
            return found
    return None


class _MissingEnv(Exception):
    def __init__(self, var: str, loc: tuple[Any, ...]) -> None:
        self.var = var
        self.loc = loc


def _enabled(obj: Any) -> bool:
    return not (isinstance(obj, dict) and obj.get("enabled") is False)


def _expand_env(obj: Any, env: Mapping[str, str], loc: tuple[Any, ...]) -> Any:
    if isinstance(obj, dict):
        if not _enabled(obj):
            return obj
        return {k: _expand_env(v, env, (*loc, k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand_env(v, env, (*loc, i)) for i, v in enumerate(obj)]
    if isinstance(obj, str) and "${" in obj:

        def sub(m: re.Match[str]) -> str:
            val = env.get(m.group(1), m.group(2))
            if val is None:
                raise _MissingEnv(m.group(1), loc)
            return val

        return _ENV_REF.sub(sub, obj)
    return obj


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _fmt_line(line: int | None) -> str:
    return f"line {line}: " if line else ""


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == part), None)
            key = next((k for k, _ in node.value if k.value == part), None)
            if key is not None:
                best = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
            best = nxt.start_mark.line + 1
        else:
            break
        node = nxt
    return best


def write_default_config(directory: Path, *, force: bool = False) -> Path:
    """`storywatch init`: write the commented default config into ``directory``.

    FileExistsError when the file is there already (and not ``force``): nothing is overwritten.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "storywatch.yaml"
    if target.exists() and not force:
        raise FileExistsError(str(target))
    target.write_text(default_config_text(), "utf-8")
    return target


__all__ = [
    "AlertsConfig",
    "BlockedURLError",
    "ChannelConfig",
    "ConfigError",
    "Settings",
    "SourceConfig",
    "WebConfig",
    "default_config_text",
    "find_config",
    "load_settings",
    "parse_duration",
    "parse_settings",
    "source_url_problem",
    "write_default_config",
]

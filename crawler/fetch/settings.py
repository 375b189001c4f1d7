"""What the guarded client is allowed to do: timeouts, caps, politeness, robots.txt (frozen, checked)."""

from __future__ import annotations

from dataclasses import dataclass

from crawler.config import Settings
from crawler.errors import ConfigError
from crawler.fetch.netguard import AddressPolicy, check_url_scheme

DEFAULT_USER_AGENT = "storywatch/0.1 (+https://github.com/storywatch/storywatch)"
_POSITIVE_SETTINGS = (
    "connect_timeout",
    "read_timeout",
    "deadline",
    "max_body_bytes",
    "robots_max_bytes",
    "per_host_concurrency",
    "global_concurrency",
)
_NON_NEGATIVE_SETTINGS = (
    "max_redirects",
    "per_host_min_gap",
    "retry_after_max",
    "robots_ttl",
    "robots_error_ttl",
)


@dataclass(frozen=True)
class FetchSettings:
    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    deadline: float = 60.0  # overall network time per fetch, all redirect hops and the body
    max_body_bytes: int = 10 * 1024 * 1024  # decoded bytes
    max_redirects: int = 5
    allow_private_networks: tuple[str, ...] = ()  # CIDRs or exact host names
    per_host_concurrency: int = 2
    per_host_min_gap: float = 1.0  # seconds between request starts to one host
    global_concurrency: int = 32
    robots_max_bytes: int = 512 * 1024  # robots.txt is read up to this size, the rest ignored
    robots_ttl: float = 3600.0
    robots_error_ttl: float = 300.0  # an unreachable robots.txt is retried after this long
    retry_after_max: float = 6 * 3600.0
    respect_robots: bool = True

    check_url_scheme = staticmethod(check_url_scheme)

    def __post_init__(self) -> None:
        for name in _POSITIVE_SETTINGS:
            if getattr(self, name) <= 0:
                raise ConfigError(f"must be > 0, got {getattr(self, name)!r}", key=name)
        for name in _NON_NEGATIVE_SETTINGS:
            if getattr(self, name) < 0:
                raise ConfigError(f"must be >= 0, got {getattr(self, name)!r}", key=name)
        AddressPolicy.from_allow_list(self.allow_private_networks)  # ConfigError when malformed


def fetch_settings(settings: Settings) -> FetchSettings:
    """The FetchSettings for these settings."""
    f = settings.fetch
    return FetchSettings(
        user_agent=f.user_agent,
        connect_timeout=f.connect_timeout,
        read_timeout=f.read_timeout,
        deadline=f.deadline,
        max_body_bytes=int(f.max_body_mb * 1024 * 1024),
        max_redirects=f.max_redirects,
        allow_private_networks=f.allow_private_networks,
        per_host_concurrency=f.per_host_concurrency,
        per_host_min_gap=f.per_host_min_gap,
        global_concurrency=f.concurrency,
        respect_robots=f.respect_robots,
    )

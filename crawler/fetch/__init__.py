"""The guarded HTTP client: SSRF guard, politeness, robots.txt, bounded decoding, conditional GET.

``client.Fetcher`` turns one URL into one ``crawler.types.Fetched`` (or a typed ``FetchError``);
``settings`` says what it may do, ``netguard`` which addresses it may reach, ``transport`` how it
connects, ``politeness`` how often, ``robots`` where, ``decoding`` how much it reads.
"""

from __future__ import annotations

from crawler.fetch.client import Fetcher, HostPaused, host_key
from crawler.fetch.netguard import AddressPolicy, check_url_scheme
from crawler.fetch.politeness import Gate, HostGate, parse_retry_after
from crawler.fetch.robots import RobotsCache, RobotsRules, robots_url
from crawler.fetch.settings import DEFAULT_USER_AGENT, FetchSettings, fetch_settings

__all__ = [
    "DEFAULT_USER_AGENT",
    "AddressPolicy",
    "FetchSettings",
    "Fetcher",
    "Gate",
    "HostGate",
    "HostPaused",
    "RobotsCache",
    "RobotsRules",
    "check_url_scheme",
    "fetch_settings",
    "host_key",
    "parse_retry_after",
    "robots_url",
]

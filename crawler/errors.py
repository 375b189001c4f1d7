"""The storywatch exception hierarchy. Every error says where and what happens next.

::

    StorywatchError
    ├── ConfigError                 bad config file: file, key, what is wrong (exit code 2)
    ├── FetchError                  one fetch failed: source id, URL; the source backs off
    │   ├── BlockedURLError         scheme or address refused (SSRF guard)
    │   ├── TooManyRedirects
    │   ├── BodyTooLarge            decoded body over the cap
    │   ├── FetchTimeout            connect/read/overall deadline
    │   ├── DecodeError             corrupt or truncated compression
    │   ├── RobotsDisallowed        robots.txt forbids the URL
    │   └── HTTPStatusError         4xx/5xx (carries status and Retry-After)
    ├── ParseError                  feed or page could not be read: source id, URL
    │   ├── SelectorNotFound        a page's CSS selector matched nothing
    │   ├── ExtractError            a page was refused before parsing (e.g. NestingTooDeep)
    │   │   └── NestingTooDeep      elements nest deeper than ``extract.max_depth``
    │   └── CPUBudgetExceeded       a document's CPU work passed ``fetch.cpu_budget``: its worker was
    │                               stopped and replaced (or died: WorkerDied)
    ├── RuleError                   rule file problem: file:line:column, rule id
    ├── StorageError                database problem
    │   └── DaemonLocked            another daemon already holds the database
    └── DeliveryError               an alert channel failed
        ├── TemporaryDeliveryError  retried later (5xx, 429, SMTP 4xx, timeouts)
        └── PermanentDeliveryError  not retried (4xx, SMTP 5xx)
"""

from __future__ import annotations

from typing import Any

from crawler.bounds.redact import show_url


class StorywatchError(Exception):
    """Base of every error storywatch raises on purpose.

    Picklable whatever the subclass's constructor (most take keyword-only ``url``/``source_id``/...
    that ``Exception``'s default pickling cannot pass back): errors raised in a worker process
    reach the main process with their message and attributes intact.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(cls: type[StorywatchError], args: tuple[Any, ...], state: dict[str, Any]) -> StorywatchError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class ConfigError(StorywatchError):
    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ":".join(p for p in (file, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class FetchError(StorywatchError):
    def __init__(self, message: str, *, url: str, source_id: str | None = None) -> None:
        self.url = url
        self.source_id = source_id
        prefix = f"[{source_id}] " if source_id else ""
        super().__init__(f"{prefix}{show_url(url)}: {message}")


class BlockedURLError(FetchError):
    """The URL's scheme or resolved address is not allowed."""


class TooManyRedirects(FetchError):
    pass


class BodyTooLarge(FetchError):
    pass


class FetchTimeout(FetchError):
    pass


class DecodeError(FetchError):
    pass


class RobotsDisallowed(FetchError):
    pass


class HTTPStatusError(FetchError):
    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int,
        retry_after: float | None = None,
        source_id: str | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message, url=url, source_id=source_id)


class ParseError(StorywatchError):
    def __init__(self, message: str, *, url: str | None = None, source_id: str | None = None) -> None:
        self.url = url
        self.source_id = source_id
        shown = show_url(url) if url else None
        where = " ".join(p for p in (f"[{source_id}]" if source_id else None, shown) if p)
        super().__init__(f"{where}: {message}" if where else message)


class SelectorNotFound(ParseError):
    pass


class ExtractError(ParseError):
    """A page, a feed or a sitemap was refused before a parser saw it; the source backs off."""


class CPUBudgetExceeded(ParseError):
    """Parsing or extracting one document ran past ``fetch.cpu_budget``: its worker process was killed
    and replaced, the document is failed, the next poll retries it with back-off."""


class WorkerDied(CPUBudgetExceeded):
    """The worker process processing the document died (a crash, out of memory); it was replaced."""


class NestingTooDeep(ExtractError):
    """Elements nest deeper than the cap (``extract.max_depth``): parsers slow down steeply with depth."""


class RuleError(StorywatchError):
    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        rule_id: str | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.rule_id = rule_id
        self.message = message
        loc = ":".join(str(p) for p in (file, line, column) if p is not None)
        rid = f" [{rule_id}]" if rule_id else ""
        super().__init__(f"{loc}:{rid} {message}" if loc else f"{rid.strip()} {message}".strip())


class StorageError(StorywatchError):
    pass


class DaemonLocked(StorageError):
    pass


class DeliveryError(StorywatchError):
    def __init__(self, message: str, *, channel: str, retry_after: float | None = None) -> None:
        self.channel = channel
        self.retry_after = retry_after
        super().__init__(f"channel {channel}: {message}")


class TemporaryDeliveryError(DeliveryError):
    pass


class PermanentDeliveryError(DeliveryError):
    pass

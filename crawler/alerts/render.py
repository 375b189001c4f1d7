"""Render a delivery's payload into a :class:`RenderedMessage` with sandboxed Jinja2 templates.

Each channel type needs some *parts* (``subject``, ``text``, ``html``, ``slack``, ``webhook``);
each part has a default template in ``crawler/alerts/templates/``. ``ChannelConfig.template``
(a file path, relative to the config file's folder) overrides the channel's main part: the JSON
body for slack and webhook channels, the plain-text body for console and apprise, and for email
the plain-text body, or the HTML body when the file name ends in ``.html`` / ``.html.j2``
(an email whose text body is overridden is sent without the default HTML part).

Safety: templates run in Jinja2's ``ImmutableSandboxedEnvironment`` (no attribute games such as
``''.__class__.__mro__``: they raise :class:`TemplateError`), feed text reaches Slack templates
already escaped (``& < >``) so it cannot mention anyone or forge links, HTML is autoescaped,
every string in the context is capped and each part's output is capped while it is generated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from crawler.alerts.base import RenderedMessage, TemplateError
from crawler.alerts.payload import repeat_view
from crawler.config import ChannelConfig

TEMPLATE_DIR = Path(__file__).parent / "templates"
MAX_OUTPUT = 256 * 1024  # characters per rendered part
MAX_FIELD = 4000  # characters per string in the template context
MAX_SUBJECT = 200
SHORT_EVIDENCE = 300
TRUNCATED = " …[truncated]"

PARTS: Mapping[str, tuple[str, ...]] = {
    "slack": ("subject", "slack"),
    "email": ("subject", "text", "html"),
    "webhook": ("subject", "webhook"),
    "console": ("subject", "text"),
    "apprise": ("subject", "text"),
}
_FILES = {
    "subject": "subject.txt.j2",
    "text": "text.txt.j2",
    "html": "email.html.j2",
    "slack": "slack.json.j2",
    "webhook": "webhook.json.j2",
}
_OVERRIDES = {"slack": "slack", "webhook": "webhook", "email": "text", "console": "text", "apprise": "text"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_WHITESPACE = re.compile(r"\s")
_WEB_URL = re.compile(r"^https?://[^\s]+$", re.I)


def slack_escape(text: str) -> str:
    """Slack's three control characters; after this, feed text cannot open <!channel>, <@U..> or <url>."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_url(url: str) -> str:
    return slack_escape(url.replace("|", "%7C").replace(" ", "%20"))


def one_line(text: str, limit: int = MAX_SUBJECT) -> str:
    """CR, LF and every other control character become a space (no header injection), capped."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def cap(text: str, limit: int = MAX_FIELD) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


# ----------------------------------------------------------------------------- per-format views


@dataclass(frozen=True)
class _Format:
    esc: Callable[[str], Any]
    url: Callable[[str], Any]
    bold: Callable[[Any], Any]
    join: Callable[[Sequence[Any]], Any]


def _html_join(parts: Sequence[Any]) -> Markup:
    return Markup("").join(parts)


_FORMATS = {
    "slack": _Format(slack_escape, slack_url, lambda s: f"*{s}*", "".join),
    "html": _Format(str, str, lambda s: Markup("<strong>{}</strong>").format(s), _html_join),
    "text": _Format(str, str, str, "".join),
    "json": _Format(str, str, str, "".join),
}


def _deep(value: Any, fmt: _Format, key: str = "") -> Any:
    if isinstance(value, str) and key in ("link", "url"):
        return fmt.url(value[:MAX_FIELD]) if _WEB_URL.match(value) else None  # no javascript: links
    if isinstance(value, str):
        return fmt.esc(cap(value))
    if isinstance(value, Mapping):
        return {k: _deep(v, fmt, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep(v, fmt, key) for v in value]
    return value


def _marked(evidence: str, spans: Sequence[Sequence[Any]], fmt: _Format) -> Any:
    """The evidence on one line with its matched spans in bold (escaped per format), capped."""
    flat = _WHITESPACE.sub(" ", evidence)  # same length: span offsets stay valid
    text = flat if len(flat) <= MAX_FIELD else flat[: MAX_FIELD - len(TRUNCATED)]
    parts: list[Any] = []
    pos = 0
    for start, end, *_ in sorted(tuple(s) for s in spans if len(s) >= 2):
        if not (pos <= start < end <= len(text)):
            continue
        parts += [fmt.esc(text[pos:start]), fmt.bold(fmt.esc(text[start:end]))]
        pos = end
    parts.append(fmt.esc(text[pos:] + (TRUNCATED if len(text) < len(flat) else "")))
    return fmt.join(parts)


def _alert_view(alert: Mapping[str, Any], fmt: _Format) -> dict[str, Any]:
    view = _deep(dict(alert), fmt)
    raw = str(alert.get("evidence", ""))
    spans = alert.get("spans", [])
    view["evidence_marked"] = _marked(raw, spans, fmt)
    view["evidence_short"] = fmt.esc(cap(" ".join(raw.split()), SHORT_EVIDENCE))
    view.setdefault("is_update", False)
    view.setdefault("is_repeat", False)
    view["terms"] = list(dict.fromkeys(fmt.esc(str(s[2])) for s in spans if len(s) > 2))
    return view


def context(
    payload: Mapping[str, Any], fmt_name: str, *, channel: str, idempotency_key: str
) -> dict[str, Any]:
    fmt = _FORMATS[fmt_name]
    alert = payload.get("alert")
    repeat = payload.get("repeat")
    return {
        "kind": payload.get("kind", "alert"),
        "alert": _alert_view(alert, fmt) if isinstance(alert, Mapping) else None,
        "repeat": _deep(repeat_view(alert, repeat), fmt)
        if isinstance(alert, Mapping) and isinstance(repeat, Mapping)
        else None,
        "alerts": [_alert_view(a, fmt) for a in payload.get("alerts", [])],
        "period": _deep(payload.get("period"), fmt),
        "notice": _deep(payload.get("notice"), fmt),
        "channel": fmt.esc(channel),
        "idempotency_key": idempotency_key,
    }


# ----------------------------------------------------------------------------- the renderer

_PART_FORMAT = {"subject": "text", "text": "text", "html": "html", "slack": "slack", "webhook": "json"}


class Renderer:
    """Compiles and caches templates; ``base_dir`` resolves relative ``ChannelConfig.template`` paths."""

    def __init__(self, base_dir: Path | None = None, *, max_output: int = MAX_OUTPUT) -> None:
        self.base_dir = base_dir or Path.cwd()
        self.max_output = max_output
        loader = jinja2.FileSystemLoader(TEMPLATE_DIR)
        opts: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.StrictUndefined,
            "keep_trailing_newline": True,
        }
        self._text = ImmutableSandboxedEnvironment(autoescape=False, **opts)
        self._html = ImmutableSandboxedEnvironment(autoescape=True, **opts)
        self._cache: dict[tuple[str, str, float], jinja2.Template] = {}

    def render(
        self, channel: str, cfg: ChannelConfig, payload: Mapping[str, Any], *, idempotency_key: str
    ) -> RenderedMessage:
        parts = self._parts(cfg)
        out: dict[str, str] = {}
        for part, source in parts.items():
            ctx = context(payload, _PART_FORMAT[part], channel=channel, idempotency_key=idempotency_key)
            out[part] = self._run(self._template(part, source), ctx, source or _FILES[part], part)
        data = None
        for part in ("slack", "webhook"):
            if part in out:
                data = _json_body(out[part], part, parts[part] or _FILES[part])
        alert = payload.get("alert")
        thread = alert.get("group_key") if isinstance(alert, Mapping) else None
        return RenderedMessage(
            kind=str(payload.get("kind", "alert")),
            subject=one_line(out["subject"]),
            text=out.get("text") or one_line(out["subject"]),
            html=out.get("html"),
            data=data,
            thread=thread,
        )

    def check(self, channel: str, cfg: ChannelConfig) -> None:
        """Compile this channel's templates (syntax errors, missing files) -> TemplateError."""
        for part, source in self._parts(cfg).items():
            self._template(part, source)

    def _parts(self, cfg: ChannelConfig) -> dict[str, str | None]:
        """part -> user template path (None = the default template)."""
        parts: dict[str, str | None] = dict.fromkeys(PARTS[cfg.type])
        if cfg.template:
            target = _OVERRIDES[cfg.type]
            if cfg.type == "email" and re.search(r"\.html?(\.j2|\.jinja2?)?$", cfg.template, re.I):
                target = "html"
            elif cfg.type == "email":
                parts.pop("html", None)
            parts[target] = cfg.template
        return parts

    def _template(self, part: str, source: str | None) -> jinja2.Template:
        env = self._html if part == "html" else self._text
        if source is None:
            try:
                return env.get_template(_FILES[part])
            except jinja2.TemplateError as exc:
                raise TemplateError(f"default template broken: {exc}", file=_FILES[part]) from exc
        path = Path(source).expanduser()
        path = path if path.is_absolute() else self.base_dir / path
        try:
            key = (part, str(path), path.stat().st_mtime)
            if key not in self._cache:
                self._cache[key] = env.from_string(path.read_text("utf-8"))
            return self._cache[key]
        except OSError as exc:
            raise TemplateError(f"cannot read template: {exc.strerror or exc}", file=str(path)) from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"line {exc.lineno}: {exc.message}", file=str(path)) from exc

    def _run(self, tmpl: jinja2.Template, ctx: Mapping[str, Any], name: str, part: str) -> str:
        chunks: list[str] = []
        size = 0
        try:
            for chunk in tmpl.generate(ctx):
                size += len(chunk)
                if size > self.max_output:
                    if part in ("slack", "webhook"):
                        raise TemplateError(f"{part} output is over {self.max_output} characters", file=name)
                    chunks.append(chunk[: len(chunk) - (size - self.max_output)] + TRUNCATED)
                    break
                chunks.append(chunk)
        except TemplateError:
            raise
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(f"unsafe template refused by the sandbox: {exc}", file=name) from exc
        except Exception as exc:  # boundary: a user template is user code; any error it raises is reported
            raise TemplateError(f"template failed: {type(exc).__name__}: {exc}", file=name) from exc
        return "".join(chunks)


def _json_body(text: str, part: str, name: str) -> dict[str, Any]:
    stripped = text.strip()
    if part == "slack" and not stripped.startswith("{"):
        return {
            "text": stripped,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": stripped}}],
        }
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{part} template did not produce JSON: {exc}", file=name) from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{part} template must produce a JSON object", file=name)
    return data

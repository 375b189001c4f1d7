"""Canonical URLs and search-redirect unwrapping: the many spellings of one article's address, one key.

:func:`canonicalize_url` turns the many spellings of one article's address into one key: scheme and
host lower-cased, IDNA hosts in their ASCII (punycode) form, default ports, fragments and tracking
parameters dropped, the remaining query sorted, ``www.`` / ``m.`` / ``mobile.`` / ``amp.`` host
prefixes and AMP path/query variants removed, a trailing ``index.html`` and a trailing slash
removed. The result is an *identity key*: it is what ``documents.canonical_url`` holds, and usually
still a working link, but fetch and link to the URL the document was found under. It never raises:
input that is not an http(s) URL comes back stripped, as given. :func:`unwrap_search_redirect`
finds the article behind a news-search feed's redirect link. Pure, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

# Query parameters that only say where a click came from. Compared case-insensitively.
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        # ad-click identifiers: Google, Facebook, Microsoft, Yandex, TikTok, Twitter, LinkedIn...
        "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "ysclid",
        "twclid", "ttclid", "li_fat_id", "igshid", "igsh", "epik", "rb_clickid", "s_kwcid",
        # analytics and e-mail campaigns (Mailchimp, HubSpot, Marketo, Google Analytics linker)
        "mc_cid", "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok", "vero_id", "vero_conv",
        "oly_anon_id", "oly_enc_id", "wt.mc_id", "pk_campaign", "pk_kwd", "pk_source", "pk_medium",
        # referrers and share buttons
        "ref", "ref_src", "ref_url", "referrer", "share", "sr_share", "sh", "spm", "scm",
        "soc_src", "soc_trk", "__twitter_impression", "guccounter", "guce_referrer", "guce_referrer_sig",
        # publisher campaign codes (Guardian CMP, NYT smid, MSN ocid, BBC/AT Internet, Reuters...)
        "cmp", "cmpid", "ocid", "smid", "smtyp", "ito", "at_medium", "at_campaign", "at_source",
        "at_custom1", "at_custom2", "at_custom3", "at_custom4", "ns_mchannel", "ns_source",
        "ns_campaign", "ns_linkname", "ns_fee", "taid", "traffic_source", "feedtype", "dicbo",
    }
)  # fmt: skip
# Parameter-name prefixes that are always tracking (utm_source, utm_medium, mtm_campaign...).
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "mtm_", "piwik_", "hsa_", "matomo_")
# Parameters the AMP viewers and caches add; dropped like tracking.
_AMP_PARAMS = frozenset({"usqp", "amp_js_v", "amp_gsa", "amp_r", "amp_tf", "aoh", "amp_ct"})
_AMP_TRUE = frozenset({"", "1", "true", "yes", "on"})
_HOST_PREFIXES = ("www.", "m.", "mobile.", "amp.")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_INDEX_FILES = frozenset({"index.html", "index.htm", "index.shtml", "index.php"})
_TAB_NEWLINE_RE = re.compile(r"[\t\n\r]")
_C0_SPACE = "".join(map(chr, range(0x21)))
_PCT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = "/%:@!$&'()*+,;=~-._"
# Second-level labels under which a registrable domain has three labels (bbc.co.uk, sina.com.cn).
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "edu", "ac", "ne", "or", "go", "gv"})


def canonicalize_url(
    url: str, *, extra_tracking: Iterable[str] = (), page_canonical: str | None = None
) -> str:
    """The identity key of ``url`` (see the module docstring). Never raises.

    ``page_canonical`` is the page's own ``<link rel=canonical>`` or ``og:url`` (may be relative).
    It wins when it is plausible: http(s), on the same site (registrable domain) as ``url``, and not
    the bare home page of a site whose article URL has a path (a common CMS misconfiguration).
    ``extra_tracking`` adds parameter names (config ``dedup.tracking_params``) to the built-in list.
    """
    extra = frozenset(p.lower() for p in extra_tracking)
    base = _canonical(url, extra)
    if page_canonical and page_canonical.strip():
        candidate = _canonical(_join(url, page_canonical.strip()), extra)
        if _plausible_canonical(base, candidate):
            return candidate
    return base


def _join(base: str, ref: str) -> str:
    try:
        return urljoin(base.strip(), ref)
    except ValueError:
        return ref


def _canonical(url: str, extra: frozenset[str], depth: int = 0) -> str:
    raw = _TAB_NEWLINE_RE.sub("", url).strip(_C0_SPACE)
    try:
        parts = urlsplit("https:" + raw if raw.startswith("//") else raw)
        scheme = parts.scheme.lower()
        host, port = parts.hostname or "", parts.port
    except ValueError:  # bad IPv6 brackets, non-numeric port
        return raw
    if scheme not in _DEFAULT_PORTS or not host:
        return raw
    unwrapped = _amp_cache_target(host, parts.path, parts.query)
    if unwrapped and depth < 3:
        return _canonical(unwrapped, extra, depth + 1)
    netloc = _netloc(scheme, parts.username, parts.password, _host(host), port)
    query = _query(parts.query, extra)
    return urlunsplit((scheme, netloc, _path(parts.path), query, ""))


def _host(host: str) -> str:
    host = host.rstrip(".")
    if not host.isascii():
        with contextlib.suppress(UnicodeError):  # not encodable: keep the lower-cased Unicode form
            host = host.encode("idna").decode("ascii")
    stripped = True
    while stripped:  # "www.m.example.com" -> "example.com"
        stripped = False
        for prefix in _HOST_PREFIXES:
            rest = host[len(prefix) :]
            if host.startswith(prefix) and "." in rest:
                host, stripped = rest, True
    return host


def _netloc(scheme: str, user: str | None, password: str | None, host: str, port: int | None) -> str:
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    if user:
        creds = f"{user}:{password}" if password else user
        host = f"{creds}@{host}"
    return host


def _pct(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _path(path: str) -> str:
    path = quote(_PCT_RE.sub(_pct, path), safe=_PATH_SAFE)
    if "/." in path:
        path = _remove_dot_segments(path)
    for _ in range(8):  # until stable: "/a/amp/index.html" needs several steps
        before = path
        head, _, last = path.rpartition("/")
        if last.lower() in _INDEX_FILES:
            path = head
        path = _strip_amp_path(path.rstrip("/"))
        if path == before:
            break
    return path.rstrip("/") or "/"


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if len(out) > 1:
                out.pop()
        elif seg != ".":
            out.append(seg)
    if path.endswith(("/.", "/..")):
        out.append("")
    return "/".join(out)


def _strip_amp_path(path: str) -> str:
    low = path.lower()
    if low.endswith("/amp") or low.endswith("/amp/"):
        path = path[: low.rindex("/amp")]
    elif low.startswith("/amp/"):
        path = path[4:]
    elif low.endswith(".amp.html"):
        path = path[: -len(".amp.html")] + ".html"
    elif low.endswith(".amp"):
        path = path[: -len(".amp")]
    return path


def _query(query: str, extra: frozenset[str]) -> str:
    if not query:
        return ""
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not _dropped(k, v, extra)]
    return urlencode(sorted(kept), quote_via=quote, safe="")


def _dropped(key: str, value: str, extra: frozenset[str]) -> bool:
    k = key.lower()
    if k in TRACKING_PARAMS or k in extra or k in _AMP_PARAMS or k.startswith(TRACKING_PREFIXES):
        return True
    if k == "amp":
        return value.lower() in _AMP_TRUE
    return k == "outputtype" and value.lower() == "amp"


def _amp_cache_target(host: str, path: str, query: str) -> str | None:
    """The publisher URL behind an AMP cache (``*.cdn.ampproject.org/c/s/...``) or Google AMP viewer."""
    if host.endswith(".cdn.ampproject.org"):
        match = re.match(r"^/[cvi]/(s/)?(.+)$", path)
    elif _is_google(host):
        match = re.match(r"^/amp/(s/)?(.+)$", path)
    else:
        return None
    if match is None:
        return None
    scheme = "https" if match.group(1) else "http"
    return f"{scheme}://{match.group(2)}" + (f"?{query}" if query else "")


def _site(host: str) -> str:
    labels = host.split(".")
    if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _plausible_canonical(base: str, candidate: str) -> bool:
    try:
        b, c = urlsplit(base), urlsplit(candidate)
        c.hostname, b.hostname  # noqa: B018 - raises ValueError on a broken netloc
    except ValueError:
        return False
    if c.scheme not in _DEFAULT_PORTS or not c.hostname or not b.hostname:
        return False
    if _site(c.hostname) != _site(b.hostname):
        return False
    return not (c.path == "/" and not c.query and b.path != "/")


# --- search-engine redirect links ---------------------------------------------------------------


def unwrap_search_redirect(url: str) -> str | None:
    """Where a link wrapped by a news-search feed points.

    Returns the target URL for Bing (``/news/apiclick.aspx?url=``, ``/ck/a?u=a1<base64>``), Google
    (``/url?q=`` or ``url=``), Yahoo (``r.search.yahoo.com/.../RU=<enc>/...``) and DuckDuckGo
    (``/l/?uddg=``) redirects, unwrapping nested ones; ``url`` itself when it is not such a redirect;
    and ``None`` when it is one whose target cannot be read from the link (Google News
    ``news.google.com/rss/articles/...`` ids): the caller resolves those by following the redirect
    (or reading the page's canonical URL) and keeps both URLs as aliases.
    """
    current = url.strip()
    for _ in range(4):
        target = _unwrap_once(current)
        if target is None:
            return None
        if target == current:
            return current
        current = target
    return current


def _unwrap_once(url: str) -> str | None:
    try:
        parts = urlsplit(url if not url.startswith("//") else "https:" + url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return url
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    path = parts.path
    if host == "news.google.com" and re.match(r"^/(rss/)?(articles|read)/", path):
        return None
    if _is_google(host) and path == "/url":
        return _http_or_none(params.get("q") or params.get("url"))
    if host.endswith("bing.com") and path.lower() == "/news/apiclick.aspx":
        return _http_or_none(params.get("url"))
    if host.endswith("bing.com") and path == "/ck/a":
        return _http_or_none(_bing_base64(params.get("u", "")))
    if host == "r.search.yahoo.com":
        match = re.search(r"/RU=([^/]+)/", path + "/")
        return _http_or_none(unquote(match.group(1)) if match else None)
    if host.endswith("duckduckgo.com") and path in ("/l/", "/l"):
        return _http_or_none(params.get("uddg"))
    return url


def _is_google(host: str) -> bool:
    return re.fullmatch(r"(www\.)?google(\.com?)?\.[a-z]{2,3}", host) is not None


def _bing_base64(value: str) -> str | None:
    if not value.startswith("a1"):
        return None
    data = value[2:]
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _http_or_none(target: str | None) -> str | None:
    if target and re.match(r"^https?://[^/\s]", target.strip(), re.I):
        return target.strip()
    return None


# --- text ---------------------------------------------------------------------------------------


__all__ = ["TRACKING_PARAMS", "TRACKING_PREFIXES", "canonicalize_url", "unwrap_search_redirect"]

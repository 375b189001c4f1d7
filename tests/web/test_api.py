"""The JSON API (/api/v1/) on a database filled by a real pass over a local site: every endpoint,
cursor pagination, filters, the same shapes as the CLI's --json, answers valid against the OpenAPI
schema, and no channel URL or secret anywhere."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.sitekit import Site
from tests.web.webkit import DENIAL, HOOK_SECRET, SECRET_PATH, VENDOR, Filled, filled, serving


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Filled, httpx.Client]]:
    with (
        filled(tmp_path_factory.mktemp("api")) as f,
        serving(f.settings) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        yield f, client


@pytest.fixture(scope="module")
def f(world: tuple[Filled, httpx.Client]) -> Filled:
    return world[0]


@pytest.fixture(scope="module")
def client(world: tuple[Filled, httpx.Client]) -> httpx.Client:
    return world[1]


@pytest.fixture(scope="module")
def spec(client: httpx.Client) -> dict[str, Any]:
    return client.get("/api/v1/openapi.json").json()


def _strict(node: Any) -> Any:
    """Objects with declared properties allow no other keys: the schema must list every field."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def check(spec: dict[str, Any], path: str, method: str, response: httpx.Response) -> Any:
    """Validate ``response`` against the schema the OpenAPI document gives for it; return its JSON."""
    answer = spec["paths"][path][method]["responses"][str(response.status_code)]
    schema = answer["content"]["application/json"]["schema"]
    root = {**copy.deepcopy(schema), "components": _strict(spec["components"])}
    body = response.json()
    errors = sorted(Draft202012Validator(root).iter_errors(body), key=str)
    assert not errors, f"{method.upper()} {path}: {errors[0]}"
    return body


def csrf(client: httpx.Client) -> dict[str, str]:
    return {"X-CSRF-Token": client.get("/api/v1/csrf").json()["csrf_token"]}


def test_openapi_lists_every_endpoint(spec: dict[str, Any]) -> None:
    paths = set(spec["paths"])
    for p in (
        "/api/v1/developments",
        "/api/v1/developments/{alert_id}",
        "/api/v1/stories",
        "/api/v1/stories/{story_id}",
        "/api/v1/documents",
        "/api/v1/sources",
        "/api/v1/rules",
        "/api/v1/rules/test",
        "/api/v1/silences",
        "/api/v1/silences/{silence_id}/expire",
        "/api/v1/deliveries",
        "/api/v1/deliveries/{delivery_id}/retry",
    ):
        assert p in paths
    assert not any(p.startswith(("/stories", "/rules", "/silences")) for p in paths)  # pages stay out


def test_developments_newest_first_with_evidence_and_delivery_state(
    client: httpx.Client, spec: dict[str, Any]
) -> None:
    body = check(spec, "/api/v1/developments", "get", client.get("/api/v1/developments"))
    items = body["items"]
    assert [a["id"] for a in items] == sorted((a["id"] for a in items), reverse=True)
    vendor = next(a for a in items if a["evidence"] == VENDOR)
    assert vendor["rule_id"] == "longcat.vendor-disclosed" and vendor["severity"] == "high"
    assert vendor["deliveries"] == {"hook": "sent", "broken": "failed"}
    assert vendor["source_count"] == 2 and {s["source_id"] for s in vendor["sources"]} == {"wire", "mirror"}
    assert vendor["captures"]["model"] == "LongCat-2.0"
    assert [VENDOR[a:b] for a, b, _ in vendor["spans"]][:2] == ["LongCat-2.0", "pre-trained"]
    assert body["next_cursor"] is None


def test_developments_are_the_same_shape_as_the_cli_json(f: Filled, client: httpx.Client) -> None:
    assert client.get("/api/v1/developments").json()["items"] == f.cli_json("alerts", "list")
    detail = client.get("/api/v1/developments/1").json()
    cli = f.cli_json("alerts", "show", "1")
    secret_url = f.broken.url + SECRET_PATH
    for d in cli["deliveries"]:  # the API hides channel URLs in errors; nothing else differs
        d["last_error"] = d["last_error"] and d["last_error"].replace(secret_url, "[hidden]")
    assert detail == cli


def test_developments_filters_and_cursor_pages(client: httpx.Client, spec: dict[str, Any]) -> None:
    high = client.get("/api/v1/developments", params={"severity": "high"}).json()["items"]
    assert high and {a["severity"] for a in high} == {"high"}
    rule = client.get("/api/v1/developments", params={"rule": "longcat.training-telemetry"}).json()["items"]
    assert [a["rule_id"] for a in rule] == ["longcat.training-telemetry"]
    assert client.get("/api/v1/developments", params={"since": "2099-01-01"}).json()["items"] == []
    assert client.get("/api/v1/developments", params={"until": "2000-01-01"}).json()["items"] == []
    everything = client.get("/api/v1/developments").json()["items"]
    seen, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = check(spec, "/api/v1/developments", "get", client.get("/api/v1/developments", params=params))
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [a["id"] for a in seen] == [a["id"] for a in everything] and len(seen) >= 3
    bad = client.get("/api/v1/developments", params={"cursor": "not-ours"})
    assert bad.status_code == 400 and "cursor" in bad.json()["detail"]
    assert client.get("/api/v1/developments", params={"since": "often"}).status_code == 400


def test_one_development_and_a_missing_one(client: httpx.Client, spec: dict[str, Any]) -> None:
    body = check(spec, "/api/v1/developments/{alert_id}", "get", client.get("/api/v1/developments/1"))
    assert body["alert"]["id"] == 1 and {d["channel"] for d in body["deliveries"]} == {"hook", "broken"}
    missing = client.get("/api/v1/developments/9999")
    assert missing.status_code == 404 and "9999" in missing.json()["detail"]


def test_stories_with_documents_like_the_cli(f: Filled, client: httpx.Client, spec: dict[str, Any]) -> None:
    body = check(spec, "/api/v1/stories", "get", client.get("/api/v1/stories"))
    assert body["items"] == f.cli_json("stories")
    vendor = next(s for s in body["items"] if s["title"] == "Huawei chips behind LongCat-2.0")
    assert set(vendor["sources"]) == {"wire", "mirror"} and vendor["documents"]
    page = client.get("/api/v1/stories", params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = client.get("/api/v1/stories", params={"limit": 10, "cursor": page["next_cursor"]}).json()
    assert [s["id"] for s in page["items"] + rest["items"]] == [s["id"] for s in body["items"]]


def test_story_detail_timeline_matches_and_alerts(client: httpx.Client, spec: dict[str, Any]) -> None:
    alerts = client.get("/api/v1/developments", params={"rule": "longcat.vendor-disclosed"}).json()["items"]
    sid = next(a["story_id"] for a in alerts if a["evidence"] == VENDOR)
    body = check(spec, "/api/v1/stories/{story_id}", "get", client.get(f"/api/v1/stories/{sid}"))
    assert body["story"]["id"] == sid and body["languages"] == ["en"]
    assert any(
        m["rule_id"] == "longcat.vendor-disclosed" and m["evidence"] == VENDOR for m in body["matches"]
    )
    assert body["alerts"][0]["story_id"] == sid and body["page_changes"] == []
    assert client.get("/api/v1/stories/424242").status_code == 404


def test_documents_filtered_by_source_and_story(client: httpx.Client, spec: dict[str, Any]) -> None:
    body = check(spec, "/api/v1/documents", "get", client.get("/api/v1/documents"))
    assert len(body["items"]) == 3  # the mirror's reprint is the same document, seen twice
    wire = client.get("/api/v1/documents", params={"source": "wire"}).json()["items"]
    assert {d["source_id"] for d in wire} == {"wire"} and len(wire) == 3
    assert client.get("/api/v1/documents", params={"source": "mirror"}).json()["items"] == []
    vendor = next(d for d in body["items"] if d["title"] == "Huawei chips behind LongCat-2.0")
    assert vendor["sources"] == ["mirror", "wire"]
    story = client.get("/api/v1/documents", params={"story": vendor["story_id"]}).json()["items"]
    assert [d["id"] for d in story] == [vendor["id"]]
    first = client.get("/api/v1/documents", params={"limit": 2}).json()
    more = client.get("/api/v1/documents", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in first["items"] + more["items"]] == [d["id"] for d in body["items"]]


def test_sources_like_the_cli(f: Filled, client: httpx.Client, spec: dict[str, Any]) -> None:
    body = check(spec, "/api/v1/sources", "get", client.get("/api/v1/sources"))
    assert [s["id"] for s in body] == ["wire", "mirror"] and {s["health"] for s in body} == {"ok"}
    cli = f.cli_json("sources")
    assert [{**s, "timing": None} for s in body] == [{**s, "timing": None} for s in cli]


def test_rules_with_lint_state_and_inline_tests(client: httpx.Client, spec: dict[str, Any]) -> None:
    body = check(spec, "/api/v1/rules", "get", client.get("/api/v1/rules"))
    ids = {r["id"] for r in body["rules"]}
    assert "longcat.vendor-disclosed" in ids and body["errors"] == []
    vendor = next(r for r in body["rules"] if r["id"] == "longcat.vendor-disclosed")
    assert vendor["description"] and vendor["tests"] > 5 and vendor["failures"] == []


def test_rules_test_fires_and_reports_negated_like_the_cli(
    f: Filled, client: httpx.Client, spec: dict[str, Any]
) -> None:
    headers = csrf(client)
    fired = check(
        spec,
        "/api/v1/rules/test",
        "post",
        client.post("/api/v1/rules/test", json={"text": VENDOR, "title": "t"}, headers=headers),
    )
    assert [m["rule"] for m in fired["matches"]] == ["longcat.vendor-disclosed"]
    denied = client.post("/api/v1/rules/test", json={"text": DENIAL}, headers=headers).json()
    assert denied["matches"] == []
    assert [(m["rule"], m["status"]) for m in denied["suppressed"]] == [
        ("longcat.vendor-disclosed", "negated")
    ]
    cli = f.runner.invoke(
        __import__("crawler.cli.base", fromlist=["cli"]).cli,
        ["--config", str(f.config), "rules", "test", "--text", DENIAL, "--json"],
    )
    import json

    assert json.loads(cli.output) == {**denied, "id": "text"}


def test_silences_add_list_expire(f: Filled, client: httpx.Client, spec: dict[str, Any]) -> None:
    headers = csrf(client)
    made = client.post("/api/v1/silences", json={"rule": "industry.*", "duration": "1h"}, headers=headers)
    assert made.status_code == 201
    info = check(spec, "/api/v1/silences", "post", made)
    assert info["matcher"] == {"rule": "industry.*"} and info["active"] and info["created_by"] == "web"
    listed = check(spec, "/api/v1/silences", "get", client.get("/api/v1/silences"))
    assert (
        [s["id"] for s in listed]
        == [info["id"]]
        == [s["id"] for s in f.cli_json("alerts", "silence", "list")]
    )
    gone = client.post(f"/api/v1/silences/{info['id']}/expire", headers=headers)
    assert check(spec, "/api/v1/silences/{silence_id}/expire", "post", gone)["active"] is False
    assert client.get("/api/v1/silences").json() == []
    assert [s["id"] for s in client.get("/api/v1/silences", params={"all": "true"}).json()] == [info["id"]]
    bad = client.post("/api/v1/silences", json={"rule": "x", "duration": "soon"}, headers=headers)
    assert bad.status_code == 400 and "duration" in bad.json()["detail"]


def test_failed_deliveries_listed_and_retried(client: httpx.Client, spec: dict[str, Any]) -> None:
    body = check(spec, "/api/v1/deliveries", "get", client.get("/api/v1/deliveries"))
    assert body and {d["channel"] for d in body} == {"broken"} and {d["state"] for d in body} == {"failed"}
    target = body[-1]
    again = client.post(f"/api/v1/deliveries/{target['id']}/retry", headers=csrf(client))
    assert check(spec, "/api/v1/deliveries/{delivery_id}/retry", "post", again)["delivery_ids"] == [
        target["id"]
    ]
    assert target["id"] not in {d["id"] for d in client.get("/api/v1/deliveries").json()}
    alert = body[0]["alert_id"]
    retried = client.post(f"/api/v1/developments/{alert}/retry", headers=csrf(client))
    assert check(spec, "/api/v1/developments/{alert_id}/retry", "post", retried)["delivery_ids"]
    assert client.post("/api/v1/deliveries/999999/retry", headers=csrf(client)).status_code == 404


def test_no_answer_reveals_a_channel_url_or_secret(f: Filled, client: httpx.Client) -> None:
    texts = [
        client.get(p).text
        for p in (
            "/api/v1/developments",
            "/api/v1/developments/1",
            "/api/v1/deliveries?state=failed&state=dead&state=pending&state=sent",
            "/api/v1/rules",
            "/api/v1/sources",
            "/healthz",
            "/",
            "/silences",
            "/rules",
            "/sources",
            "/stories",
            "/stories/1",
        )
    ]
    for text in texts:
        assert "SECRET" not in text and HOOK_SECRET not in text and f.hook.url not in text


def test_pages_answer_with_the_security_headers(client: httpx.Client) -> None:
    for path in ("/", "/stories", "/sources", "/rules", "/silences", "/stories/1", "/api/v1/developments"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"


def test_healthz_standalone_and_no_metrics_outside_the_daemon(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "running", "role": "web"}
    assert client.get("/metrics").status_code == 404


def test_cli_json_uses_the_shared_serializer(tmp_path: Path) -> None:
    from crawler.alerts.views import Page, to_jsonable

    assert to_jsonable(Page((frozenset({"b", "a"}),), None)) == {"items": [["a", "b"]], "next_cursor": None}


def test_pages_cost_the_same_number_of_queries_whatever_their_size(f: Filled) -> None:
    from sqlalchemy import event

    from storage.db import open_database
    from storage.outbox_admin import alerts_page
    from storage.stories import documents_page, stories_page, story_detail

    db = open_database(f.settings.database_url)
    seen: list[str] = []
    for engine in {id(e): e for e in (db.engine, db.read_engine)}.values():
        event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))

    def statements(call: Any) -> int:
        seen.clear()
        call()
        return len(seen)

    for page in (alerts_page, stories_page, documents_page):
        one, many = statements(lambda p=page: p(db, limit=1)), statements(lambda p=page: p(db, limit=100))
        assert one == many, f"{page.__name__}: {one} statements for 1 item, {many} for all"
    assert statements(lambda: story_detail(db, 1)) <= 12
    db.dispose()


def test_the_readme_shows_the_dashboard_screenshot() -> None:
    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text("utf-8")
    assert "## Web dashboard" in readme and "](docs/dashboard.png)" in readme
    assert (repo / "docs" / "dashboard.png").read_bytes().startswith(b"\x89PNG")
    assert "storywatch web" in readme and "daemon.http" in readme


def test_a_watched_page_change_shows_as_a_diff_on_its_story(tmp_path: Path) -> None:
    def region(lines: list[str]) -> str:
        items = "".join(f"<li>{line}</li>" for line in lines)
        return f"<html><body><div id='board'><ul>{items}</ul></div></body></html>"

    before = ["LongCat-2.0 ranks third on the open leaderboard.", "Qwen leads the coding track this week."]
    added = "LongCat-2.0 now ranks first on the open leaderboard after the latest evaluation round."

    def board(site: Site) -> str:
        site.add("/board", region(before))
        return f"  - {{id: board, kind: page, url: '{site.url('/board')}', selector: '#board'}}\n"

    with filled(tmp_path, hostile=False, extra=board) as f:
        f.site.add("/board", region([*before, added]))
        f.once()
        with serving(f.settings) as base, httpx.Client(base_url=base) as client:
            docs = client.get("/api/v1/documents", params={"source": "board"}).json()["items"]
            assert docs and docs[0]["origin"] == "page"
            detail = client.get(f"/api/v1/stories/{docs[0]['story_id']}").json()
            change = next(c for c in detail["page_changes"] if c["document_id"] == docs[0]["id"])
            assert f"+{added}" in change["diff"] and f" {before[1]}" in change["diff"]
            page = client.get(f"/stories/{docs[0]['story_id']}").text
            assert "Page changes" in page and f'<span class="add">+{added}</span>' in page


def test_every_list_and_detail_on_both_backends(db_url: str, tmp_path: Path) -> None:
    with (
        filled(tmp_path, database=db_url) as f,
        serving(f.settings) as base,
        httpx.Client(base_url=base) as client,
    ):
        alerts = client.get("/api/v1/developments", params={"limit": 1})
        assert alerts.status_code == 200 and alerts.json()["next_cursor"]
        ids, cursor = [], None
        while True:
            page = client.get(
                "/api/v1/developments", params={"limit": 1, **({"cursor": cursor} if cursor else {})}
            )
            ids += [a["id"] for a in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        assert sorted(ids, reverse=True) == ids and len(ids) == 3
        assert client.get("/api/v1/developments", params={"since": "1h", "severity": "high"}).json()["items"]
        story = client.get("/api/v1/stories").json()["items"][0]["id"]
        for path in (
            "/",
            "/stories",
            f"/stories/{story}",
            "/sources",
            "/silences",
            f"/api/v1/stories/{story}",
        ):
            assert client.get(path).status_code == 200, path
        docs = client.get("/api/v1/documents", params={"limit": 2}).json()
        more = client.get("/api/v1/documents", params={"limit": 2, "cursor": docs["next_cursor"]}).json()
        assert len(docs["items"]) + len(more["items"]) == 3
        assert {s["health"] for s in client.get("/api/v1/sources").json()} == {"ok"}

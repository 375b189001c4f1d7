"""``storywatch rules lint``, ``storywatch rules test`` and ``storywatch rules eval``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from crawler.cli.base import EXIT_FAILED, EXIT_USAGE, Ctx, fail, out
from rules import scoring as rulescore
from rules import testing as ruletest
from rules.engine import load_rules

RULES_OPTION = click.option(
    "--rules",
    "rule_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Rule file or directory (repeatable; default: the configured rules).",
)


@click.group()
def rules() -> None:
    """Check rule files and try them on texts.

    \b
    Examples:
      storywatch rules lint rules/
      storywatch rules test                                  # the inline tests of the rule files
      storywatch rules test --text "Meituan confirmed LongCat-2.0 was trained on Ascend 910C chips."
      storywatch rules test --rules my.yaml --jsonl cases.jsonl --json
      storywatch rules test article.html notes.txt
      storywatch rules test --url https://example.com/news/longcat
      storywatch rules eval cases.jsonl --split check --min-precision 0.95 --min-recall 0.9
    """


def _paths(obj: Ctx, given: tuple[Path, ...]) -> list[Path]:
    return list(given) if given else list(obj.settings.rule_paths())


@rules.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.pass_obj
def lint_cmd(obj: Ctx, paths: tuple[Path, ...]) -> None:
    """Check rule files: every problem as `file:line:column: [rule-id] message`, then (when they
    load) run every rule's inline tests. Exit 1 on any error or failing test.

    Without PATHS, the rule files of the configuration are checked.

    \b
    Examples:
      storywatch rules lint
      storywatch rules lint rules/packs/longcat.yaml my-rules/
    """
    report, ok = ruletest.lint_and_test(_paths(obj, paths))
    click.echo(report)
    if not ok:
        sys.exit(EXIT_FAILED)


@rules.command("test")
@RULES_OPTION
@click.option(
    "--jsonl",
    "jsonl",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='One document per line: {"id", "title", "text", "source"?, "url"?, "published"?}.',
)
@click.option("--text", "text", help="Test one text.")
@click.option("--title", default="", help="Title for --text.")
@click.option("--source", "source_id", default="", help="Source id for --text (rules may condition on it).")
@click.option("--url", "url", help="Fetch a page, extract its article and test it.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON Lines: one object per document with the matches that fire (or per inline test).",
)
@click.option(
    "--quiet-misses",
    is_flag=True,
    help='Hide hits that did not fire (hedged/negated; with --json, no "suppressed" list).',
)
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def test_cmd(
    obj: Ctx,
    rule_paths: tuple[Path, ...],
    jsonl: Path | None,
    text: str | None,
    title: str,
    source_id: str,
    url: str | None,
    as_json: bool,
    quiet_misses: bool,
    files: tuple[Path, ...],
) -> None:
    """Run rules on documents and show what fires, with the evidence sentence highlighted.

    Without any document, runs the inline `tests:` of the rule files (exit 1 if one fails).

    \b
    Examples:
      storywatch rules test
      storywatch rules test --rules rules/ --jsonl ../shared/story/dev_cases.jsonl --json
      storywatch rules test --text "Huawei said its Atlas 950 SuperPoD powered LongCat-2.0's pre-training."
      storywatch rules test page.html --rules rules/packs/longcat.yaml
    """
    ruleset = load_rules(_paths(obj, rule_paths))
    docs = _documents(obj, jsonl, text, title, source_id, url, files)
    if not docs:
        results = ruletest.run_inline_tests(ruleset)
        if as_json:
            for r in results:
                click.echo(json.dumps(r.__dict__, ensure_ascii=False))
        else:
            click.echo(ruletest.inline_test_report(results))
        sys.exit(EXIT_FAILED if any(not r.passed for r in results) else 0)
    if as_json:
        for row in ruletest.test_documents(ruleset, docs, suppressed=not quiet_misses):
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    out.print(ruletest.render_report(ruleset, docs, show_suppressed=not quiet_misses))


@rules.command("eval")
@click.argument("cases", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@RULES_OPTION
@click.option("--split", help="Only the cases whose \"split\" field is this value (e.g. check).")
@click.option("--lang", help='Only the cases in this language (their "lang" field; zh matches zh-CN).')
@click.option("--min-precision", type=click.FloatRange(0, 1), help="Exit 1 when a rule's precision is lower.")
@click.option("--min-recall", type=click.FloatRange(0, 1), help="Exit 1 when a rule's recall is lower.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_obj
def eval_cmd(
    obj: Ctx,
    cases: Path,
    rule_paths: tuple[Path, ...],
    split: str | None,
    lang: str | None,
    min_precision: float | None,
    min_recall: float | None,
    as_json: bool,
) -> None:
    """Back-test rules on labelled cases: per rule TP, FP, FN, precision and recall, the share of
    cases whose fired rules are exactly their labels, and every miss with its evidence sentence or
    why nothing fired. Exit 1 when a rule is below --min-precision or --min-recall.

    CASES is JSONL, one case per line: {"id", "title", "text", "labels": [rule ids that must
    fire], "source"?, "url"?, "lang"?, "split"?}.

    \b
    Examples:
      storywatch rules eval tests/data/rules/longcat_cases.jsonl
      storywatch rules eval cases.jsonl --split check --lang zh --min-precision 0.95 --min-recall 0.9
      storywatch rules eval cases.jsonl --rules my-rules.yaml --json
    """
    ruleset = load_rules(_paths(obj, rule_paths))
    try:
        loaded = rulescore.parse_cases(cases.read_text("utf-8"), origin=str(cases))
    except rulescore.CaseError as exc:
        fail(str(exc), EXIT_USAGE)
    chosen = rulescore.select(loaded, split=split, lang=lang)
    if not chosen:
        fail(f"{cases}: no case matches --split {split} --lang {lang}", EXIT_USAGE)
    report = rulescore.score_cases(ruleset, chosen)
    failures = report.failures(min_precision=min_precision, min_recall=min_recall)
    if as_json:
        click.echo(json.dumps(rulescore.eval_json(report, failures=failures), ensure_ascii=False))
    else:
        click.echo(rulescore.render_eval(report, failures=failures))
    if failures:
        sys.exit(EXIT_FAILED)


def _documents(
    obj: Ctx,
    jsonl: Path | None,
    text: str | None,
    title: str,
    source_id: str,
    url: str | None,
    files: tuple[Path, ...],
) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    if jsonl is not None:
        for n, line in enumerate(jsonl.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                fail(f"{jsonl}:{n}: not a JSON object: {exc.msg}", EXIT_USAGE)
            if not isinstance(doc, dict) or "text" not in doc:
                fail(f'{jsonl}:{n}: expected an object with at least "text"', EXIT_USAGE)
            docs.append(doc)
    if text is not None:
        docs.append({"id": "text", "title": title, "text": text, "source": source_id})
    for f in files:
        docs.append(_file_document(f))
    if url is not None:
        docs.append(asyncio.run(_url_document(obj, url)))
    return docs


def _file_document(path: Path) -> dict[str, Any]:
    if path.suffix.lower() in (".html", ".htm"):
        from crawler.extract import extract_article

        art = extract_article(path.read_bytes(), url=path.resolve().as_uri())
        return {"id": str(path), "title": art.title, "text": art.text}
    return {"id": str(path), "title": "", "text": path.read_text("utf-8", errors="replace")}


async def _url_document(obj: Ctx, url: str) -> dict[str, Any]:
    from crawler.extract import extract_article
    from crawler.fetch import Fetcher, fetch_settings

    async with Fetcher(fetch_settings(obj.settings)) as fetcher:
        page = await fetcher.fetch(url, source_id="rules-test")
    art = extract_article(page.body, url=page.final_url, content_type=page.headers.get("content-type"))
    return {"id": url, "title": art.title, "text": art.text, "url": page.final_url}


def commands() -> list[click.Command]:
    return [rules]

"""crawler.dedup.pagediff: snapshot diffs that ignore volatile text, reordering and ad slots."""

from __future__ import annotations

import pytest

from crawler.dedup.pagediff import diff_snapshots, mask_volatile, normalize_snapshot
from crawler.errors import ConfigError

LEADERBOARD = """LongCat Arena leaderboard
Updated 10:42 UTC, Nov 23, 2026 · 1,234 views · last refresh 2026-11-23T10:42:00Z
Rank | Model | Score | Votes
1 | GPT 5.5 | 1450 | 20,001 votes
2 | Claude 4.8 Opus | 1441 | 18,233 votes
3 | Gemini 3.1 Pro | 1433 | 17,950 votes
Advertisement: Try FooCloud free for 30 days
Posted 5 minutes ago by admin · 12K likes · 340 comments
"""


def test_first_snapshot_is_a_baseline() -> None:
    change = diff_snapshots(None, LEADERBOARD)
    assert change.added == () and change.removed == ()
    assert not change.changed


def test_empty_previous_snapshot_is_not_a_baseline() -> None:
    change = diff_snapshots("", "Rank | Model\n1 | GPT 5.5 | 1450")
    assert change.added == ("Rank | Model", "1 | GPT 5.5 | 1450")


def test_only_timestamps_counters_and_ad_slot_changed() -> None:
    later = (
        LEADERBOARD.replace("10:42 UTC, Nov 23, 2026", "11:05 UTC, Nov 24, 2026")
        .replace("2026-11-23T10:42:00Z", "2026-11-24T11:05:13Z")
        .replace("1,234 views", "1,301 views")
        .replace("20,001 votes", "20,114 votes")
        .replace("Try FooCloud free for 30 days", "BarPhone 12 - buy now")
        .replace("5 minutes ago", "2 hrs ago")
        .replace("12K likes · 340 comments", "12.4K likes · 351 comments")
    )
    assert later != LEADERBOARD
    assert not diff_snapshots(LEADERBOARD, later).changed


def test_added_table_row_is_exactly_that_row() -> None:
    later = LEADERBOARD.replace(
        "3 | Gemini 3.1 Pro | 1433 | 17,950 votes",
        "3 | Gemini 3.1 Pro | 1433 | 17,950 votes\nLongCat-2.0 | 1402 | 9,123 votes",
    ).replace("1,234 views", "1,420 views")
    change = diff_snapshots(LEADERBOARD, later)
    assert change.added == ("LongCat-2.0 | 1402 | 9,123 votes",)
    assert change.removed == ()


def test_changed_score_is_a_change_but_changed_votes_are_not() -> None:
    votes = LEADERBOARD.replace("18,233 votes", "19,000 votes")
    assert not diff_snapshots(LEADERBOARD, votes).changed
    score = LEADERBOARD.replace("| 1441 |", "| 1447 |")
    change = diff_snapshots(LEADERBOARD, score)
    assert change.added == ("2 | Claude 4.8 Opus | 1447 | 18,233 votes",)
    assert change.removed == ("2 | Claude 4.8 Opus | 1441 | 18,233 votes",)


def test_reordering_is_not_a_change() -> None:
    lines = LEADERBOARD.strip().splitlines()
    shuffled = "\n".join([lines[0], lines[5], lines[3], *lines[6:], lines[4], lines[1], lines[2]])
    assert not diff_snapshots(LEADERBOARD, shuffled).changed


def test_whitespace_and_blank_lines_do_not_matter() -> None:
    spaced = "\n\n".join("   " + "  ".join(line.split(" ")) + "\t" for line in LEADERBOARD.splitlines())
    assert not diff_snapshots(LEADERBOARD, spaced).changed


def test_repeated_line_counts() -> None:
    old = "Release notes\nFixed a crash.\n"
    change = diff_snapshots(old, old + "Fixed a crash.\n")
    assert change.added == ("Fixed a crash.",)


def test_prose_changes_are_reported_per_sentence() -> None:
    old = "Meituan released LongCat-2.0. It did not name the chip vendor."
    new = old + " A spokesperson later named Ascend 910C."
    change = diff_snapshots(old, new)
    assert change.added == ("A spokesperson later named Ascend 910C.",)
    assert change.removed == ()


def test_removed_lines() -> None:
    change = diff_snapshots(
        LEADERBOARD, LEADERBOARD.replace("3 | Gemini 3.1 Pro | 1433 | 17,950 votes\n", "")
    )
    assert change.removed == ("3 | Gemini 3.1 Pro | 1433 | 17,950 votes",)
    assert change.added == ()


def test_chinese_relative_times_and_counters() -> None:
    old = "美团发布LongCat-2.0\n刚刚 · 3.4万 阅读\n5分钟前更新"
    new = "美团发布LongCat-2.0\n12分钟前 · 3.6万 阅读\n昨天更新"
    assert not diff_snapshots(old, new).changed
    assert diff_snapshots(old, new + "\n华为确认昇腾910C用于训练。").added == ("华为确认昇腾910C用于训练。",)


def test_version_numbers_are_not_masked_as_dates() -> None:
    change = diff_snapshots("Latest release: v2.0.1", "Latest release: v2.0.2")
    assert change.added == ("Latest release: v2.0.2",)


def test_sentences_that_start_with_ad_are_content() -> None:
    change = diff_snapshots("News", "News\nAd revenue at Meituan rose 5%.")
    assert change.added == ("Ad revenue at Meituan rose 5%.",)


def test_user_ignore_patterns() -> None:
    old = "Build 4411 passed\nSession token: a8f3e2\nLongCat-2.0 weights: 1.6T"
    new = "Build 4523 passed\nSession token: 99bc01\nLongCat-2.0 weights: 1.6T"
    assert diff_snapshots(old, new).changed
    assert not diff_snapshots(old, new, ignore=[r"build \d+", r"token: \w+"]).changed


def test_invalid_ignore_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        diff_snapshots("a", "b", ignore=["(unclosed"])


@pytest.mark.parametrize(
    "volatile",
    [
        "5 minutes ago",
        "about an hour ago",
        "2 hrs ago",
        "yesterday",
        "just now",
        "1,234 views",
        "Views: 1.2M",
        "12K likes",
        "Nov 23, 2026",
        "23 November 2026",
        "2026-11-23",
        "11/23/2026",
        "10:42",
        "10:42 pm",
        "9am",
        "2026年11月23日",
    ],
)
def test_volatile_text_is_masked_whole(volatile: str) -> None:
    assert mask_volatile(f"Updated {volatile}.") == mask_volatile("Updated 1 minute ago.")


def test_normalize_snapshot() -> None:
    assert normalize_snapshot("  Ｒａｎｋ   1 \n\n\t\n  GPT  5.5  ") == "Rank 1\nGPT 5.5"

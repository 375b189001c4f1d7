"""A big feed cut into feeds of whole entries parses to the same entries as the whole body."""

from __future__ import annotations

from crawler.feeds import parse_feed, split_feed
from tests.sitekit import atom, rss


def _items(n: int) -> list[dict[str, str]]:
    return [{"title": f"Entry {i}", "link": f"http://example.org/{i}", "guid": f"g{i}"} for i in range(n)]


def test_pieces_hold_every_entry_once_in_order_for_rss_and_atom() -> None:
    for body in (rss(_items(2500)).encode(), atom([{**e, "id": e["guid"]} for e in _items(2500)]).encode()):
        split = split_feed(body, 1000)
        assert split is not None and len(split.runs) == 3
        whole = parse_feed(body, url="http://example.org/feed")
        pieces = [parse_feed(p, url="http://example.org/feed") for p in split.pieces(body)]
        assert [len(p.entries) for p in pieces] == [1000, 1000, 500]
        assert [e for p in pieces for e in p.entries] == list(whole.entries)
        assert all(p.title == whole.title for p in pieces)


def test_small_or_uncuttable_feeds_are_not_cut() -> None:
    assert split_feed(rss(_items(10)).encode(), 1000) is None
    quoted = rss(_items(30)).replace("<title>Entry 3</title>", "<title><![CDATA[<item>]]></title>").encode()
    assert split_feed(quoted, 10) is None  # an entry tag quoted in CDATA: boundaries do not pair up
    assert split_feed(rss(_items(30)).encode("utf-16"), 10) is None

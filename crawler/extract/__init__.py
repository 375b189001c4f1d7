"""Page bytes -> article text and metadata (an Article), and the text of a watched region.

The two entry points are ``extract_article`` and ``extract_region`` (module ``article``);
``charset`` decodes the bytes, ``meta`` reads metadata, ``dom`` walks the page into text blocks and
``score`` picks the blocks that are the article.
"""

from __future__ import annotations

from crawler.extract.article import decode_html, extract_article, extract_region
from crawler.extract.charset import detect_charset

__all__ = ["decode_html", "detect_charset", "extract_article", "extract_region"]

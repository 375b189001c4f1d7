"""Identity of what was read: canonical URLs, text folding and hashes, MinHash fingerprints, page diffs.

``urls`` gives one key to the many spellings of an address, ``text`` one key to the same text and
to the same sentence, ``fingerprint`` MinHash/LSH keys for near-duplicates (stories), ``pagediff``
the text a watched page added.
"""

from __future__ import annotations

from crawler.dedup.minhash import THRESHOLD, Fingerprint, estimate_jaccard_many, fingerprint
from crawler.dedup.pagediff import diff_snapshots, normalize_snapshot, page_document
from crawler.dedup.text import content_hash, entry_key, normalize_text, sentence_key, sentence_texts
from crawler.dedup.urls import TRACKING_PARAMS, canonicalize_url, unwrap_search_redirect

__all__ = [
    "THRESHOLD",
    "TRACKING_PARAMS",
    "Fingerprint",
    "canonicalize_url",
    "content_hash",
    "diff_snapshots",
    "entry_key",
    "estimate_jaccard_many",
    "fingerprint",
    "normalize_snapshot",
    "normalize_text",
    "page_document",
    "sentence_key",
    "sentence_texts",
    "unwrap_search_redirect",
]

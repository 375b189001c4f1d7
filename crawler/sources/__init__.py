"""Managing the user's sources: probing an address for feeds, round-trip edits of the config file, OPML.

Used by `storywatch sources`; sits above the stages (fetch, feeds, dedup) and config, below the CLI.
"""

from crawler.sources.edit import (
    BatchResult,
    ExistingSource,
    NewSource,
    SourceExists,
    SourcesFile,
    unique_id,
    write_atomically,
)
from crawler.sources.opml import read_opml, write_opml
from crawler.sources.probe import FoundFeed, Probe, probe

__all__ = [
    "BatchResult",
    "ExistingSource",
    "FoundFeed",
    "NewSource",
    "Probe",
    "SourceExists",
    "SourcesFile",
    "probe",
    "read_opml",
    "unique_id",
    "write_atomically",
    "write_opml",
]

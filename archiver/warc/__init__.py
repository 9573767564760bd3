"""WARC files: writing, checking, indexing, packing."""

"""Readers, one per input format, over a shared base and compressed streams: raw files to Documents."""

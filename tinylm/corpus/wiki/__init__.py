"""Wikipedia: dump XML, multistream byte ranges, and wikitext markup to plain text."""

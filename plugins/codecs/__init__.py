"""Built-in codecs: how client updates travel (harness/compression.py)."""

"""Built-in codecs: how client updates travel (harness/codec.py)."""

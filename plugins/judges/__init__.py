"""Built-in judges."""

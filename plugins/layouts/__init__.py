"""Built-in layouts."""

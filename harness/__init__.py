"""fedbench core: run specs, data, federation loop, plugin registry and CLI."""

__version__ = "0.1.0"

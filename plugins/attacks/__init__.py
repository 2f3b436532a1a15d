"""Built-in attacks: what malicious clients do to their data or their updates (harness/attacks.py)."""

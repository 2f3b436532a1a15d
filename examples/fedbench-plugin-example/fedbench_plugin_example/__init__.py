"""Example third-party fedbench plugins, each module registered through its own ``fedbench`` entry point.

- :mod:`.median`: ``lower-median`` aggregator (coordinate-wise lower median, robust to outlying clients)
- :mod:`.dirichlet`: ``dirichlet`` layout (label skew with Dirichlet(alpha) proportions)
- :mod:`.arith`: ``arith`` benchmark (12 arithmetic questions, % correct)
- :mod:`.exact`: ``exact`` judge (the expected answer appears in the reply)

Everything is written against ``fedbench.api`` only.
"""

__version__ = "0.1.0"

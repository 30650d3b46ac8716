"""deskmark: marks the damage on customers' product photos in helpdesk tickets.

This package holds the command line (`deskmark.cli`), the demo, the embedded Redis and the
loopback vendors (`deskmark.sandbox`) that the demo, the tests and the benchmarks run against.
"""

__version__ = "0.1.0"

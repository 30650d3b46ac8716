"""deskmark: marks the damage on customers' product photos in helpdesk tickets.

This package holds the command line (`deskmark.cli`), the demo, the embedded Redis and the
loopback vendors (`deskmark.sandbox`) that the demo, the tests and the benchmarks run against.
"""

from importlib import metadata

try:
    __version__ = metadata.version("deskmark")  # pyproject.toml's, as installed
except metadata.PackageNotFoundError:
    __version__ = "unknown (not installed)"

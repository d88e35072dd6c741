"""certman: certificate lifecycle manager."""

__version__ = "0.1.0"

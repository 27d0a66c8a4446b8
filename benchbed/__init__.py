"""benchbed: deploy the system under benchmark, hand over its endpoints, leave no trace."""

__version__ = "0.1.0"

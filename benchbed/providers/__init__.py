"""Server providers: one module per provider, registered as `benchbed.providers` entry points."""

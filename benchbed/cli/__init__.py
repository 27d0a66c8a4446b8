"""Command line: parse arguments, call benchbed.api, render tables or JSON."""

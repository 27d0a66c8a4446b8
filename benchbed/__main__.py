"""`python -m benchbed` runs the CLI."""

from benchbed.cli.main import main

main()

"""``python -m fitaas``: the command line."""

from fitaas.cli import main

main()

"""`python -m engine.cli`: the `turnout` command without its console script."""

from engine.cli import main

main()

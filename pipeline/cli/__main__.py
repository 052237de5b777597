"""`python -m pipeline.cli`: the same as the `edgepipe` command."""

from pipeline.cli import main

main()

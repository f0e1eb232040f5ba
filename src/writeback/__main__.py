"""`python -m writeback` is the `writeback` command."""

from writeback.cli import main

main()

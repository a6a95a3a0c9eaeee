"""`python -m homeroom_dev` (what `./run` runs): the development CLI, homeroom_dev/cli.py."""

from homeroom_dev.cli import main

main()

"""`python -m helpers …`: the project's command line."""

from helpers.cli import main

raise SystemExit(main())

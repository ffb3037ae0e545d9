"""`python -m bulk_update` runs the command line."""

from .cli import main

raise SystemExit(main())

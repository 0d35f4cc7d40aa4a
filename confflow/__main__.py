"""``python -m confflow`` runs the command line."""

from confflow.cli import main

raise SystemExit(main())

"""``python -m overdrive`` runs the CLI."""

from overdrive.cli import main

raise SystemExit(main())

"""`python -m exporter` runs the same CLI as the `mixpeek-exporter` script."""

from exporter.cli import main

raise SystemExit(main())

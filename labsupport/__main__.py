"""``python -m labsupport ...``: the lab's command line."""
from .cli import main

raise SystemExit(main())

"""``python -m labsupport ...``: the lab's command line."""
from labsupport.cli import main

raise SystemExit(main())

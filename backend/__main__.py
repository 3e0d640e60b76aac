"""``python -m geovec.backend`` is the ``geovec`` command."""

from .cli import main

raise SystemExit(main())

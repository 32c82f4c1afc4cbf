"""``python -m relay.worker``: run a worker process (normally spawned by relay.create_worker)."""

import sys

from .main import main

sys.exit(main())

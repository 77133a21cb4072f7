"""Entry point of `python -m worker`."""

import sys

from config import get_settings
from worker.models import cpu_threads, limit_native_threads

# Before anything imports numpy, torch or CTranslate2, whose thread pools read it once.
limit_native_threads(cpu_threads(get_settings()))

from worker.main import main  # noqa: E402

sys.exit(main())

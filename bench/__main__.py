"""`python -m bench [--device cpu|cuda] [--model NAME] [--quick]`: measure, then write the table."""

import os
import sys

from worker.models import limit_native_threads

# As `python -m worker` does with CPU_THREADS, before numpy, torch or CTranslate2 load: the
# direct calls here run with the thread pools of the single worker they are compared with.
limit_native_threads(len(os.sched_getaffinity(0)))

from bench.cli import main  # noqa: E402

sys.exit(main())

"""`python -m nvc_pipe.fuzz`: see the package docstring."""

import sys

from .harness import main

sys.exit(main())

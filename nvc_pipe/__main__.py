"""`python -m nvc_pipe` is the `nvc` command."""

from .cli import main

raise SystemExit(main())

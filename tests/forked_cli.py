"""Several `nvc` command lines for the price of one interpreter start (tests/conftest.py `run_nvc_each`).

    python tests/forked_cli.py < cases.json > results.json      # cases: [[arg, ...], ...]

Imports what every command imports once (`nvc_pipe.cli`, `nvc_pipe.api` with torch and PyAV, the codec plugins: ~3 s
of CPU per interpreter start on the 2-core CI box), then runs each command line in a fork of itself as
`python -m nvc_pipe ARGS` runs it: `nvc_pipe.__main__` executed afresh, standard output and error on files of their
own (fd level), standard input /dev/null, an uncaught exception printed by `sys.excepthook` with exit code 1, atexit
handlers run. Each child starts from a process that has only imported modules (no logging configured, no warning
shown, no torch thread started), so each command sees what a fresh `nvc` would. For commands that fail or finish
quickly; determinism across processes is tested with real interpreter starts.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import shutil
import sys
import tempfile
import traceback
import warnings


def _child(argv: list[str], out_fd: int, err_fd: int) -> None:
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        sys.argv = ["nvc", *argv]
        try:
            runpy.run_module("nvc_pipe", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:  # what the interpreter does with it
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            sys.excepthook(*sys.exc_info())
            code = 1
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def main() -> int:
    cases = json.load(sys.stdin)
    # numpy's BLAS has a thread by now; the children only ever run one command each (Python 3.12 would warn here)
    warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
    import nvc_pipe.api  # noqa: F401  (the imports all the children share: torch, PyAV, the plugins)
    import nvc_pipe.cli  # noqa: F401
    from nvc_pipe import plugins

    for name in plugins.available_codecs():
        plugins.load_codec(name)
    for name in plugins.available_image_codecs():
        plugins.load_image_codec(name)

    results = []
    d = tempfile.mkdtemp(prefix="nvc-forked-cli-")  # not TemporaryDirectory: its atexit finalizer would run in a child
    try:
        for i, argv in enumerate(cases):
            paths = [os.path.join(d, f"{i}.{name}") for name in ("out", "err")]
            fds = [os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) for p in paths]
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(argv, *fds)
            for fd in fds:
                os.close(fd)
            _, status = os.waitpid(pid, 0)
            out, err = (open(p, "rb").read() for p in paths)
            results.append({"returncode": os.waitstatus_to_exitcode(status), "stdout": out.decode("latin-1"),
                            "stderr": err.decode("latin-1")})
    finally:
        shutil.rmtree(d, ignore_errors=True)
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

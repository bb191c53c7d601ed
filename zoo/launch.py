"""The ``zoo`` command's start: the program under jemalloc where the system has it.

A training step of the image recipes allocates and frees feature maps of tens of megabytes
per evaluation of the vector field. glibc's malloc hands every block over 32 MiB straight to
``mmap`` and back to the kernel when freed, so each evaluation pays page faults and zeroing
for memory it had a moment before: on the project's 2-core CPU machine that is a third of the
CPU time of one ANODE evaluation, and jemalloc, which keeps freed memory for reuse, makes an
ANODE training step 1.6x faster (``benchmarks/allocator_time.py``). An allocator can only be
chosen when a process starts, so ``zoo`` starts itself once more under ``LD_PRELOAD`` before
importing torch. ``$ZOO_ALLOCATOR`` chooses:

* ``auto`` (the default): jemalloc if ``libjemalloc.so.2`` is found (Debian: ``apt-get install
  libjemalloc2``), else the system's allocator;
* ``jemalloc``: jemalloc, or one line of error if it is not found;
* ``system``: the C library's malloc, as any Python program.

A process that already runs under jemalloc (a preload of the user's own, or the Docker image's)
is not started again. Results are the same under either: the allocator changes where tensors
live, not what is computed (``tests/test_launch.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CHOICES = ("auto", "jemalloc", "system")
JEMALLOC = "libjemalloc.so.2"
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                "/usr/local/lib")
#: Freed memory is kept (never decays back to the kernel), large blocks get their own arena.
MALLOC_CONF = ("oversize_threshold:1,background_thread:true,metadata_thp:auto,"
               "dirty_decay_ms:-1,muzzy_decay_ms:-1")


def main() -> None:
    """The console script ``zoo`` and ``python -m zoo``: relaunches under jemalloc, then runs the CLI."""
    try:
        environ = relaunch_environment(os.environ)
    except ValueError as error:
        print(f"zoo: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if environ is not None:
        sys.stdout.flush(), sys.stderr.flush()
        os.execve(sys.executable, sys.orig_argv, environ)  # the same command line, as typed
    from zoo.cli import main as run_command_line

    run_command_line()


def relaunch_environment(environ: os._Environ | dict[str, str]) -> dict[str, str] | None:
    """The environment to start ``zoo`` again in, or None to go on in this process.

    Raises:
        ValueError: ``$ZOO_ALLOCATOR`` is not one of :data:`CHOICES`, or it is ``jemalloc`` and
            the library is not found.
    """
    choice = environ.get("ZOO_ALLOCATOR", "auto") or "auto"
    if choice not in CHOICES:
        raise ValueError(f"ZOO_ALLOCATOR={choice!r} is not one of {', '.join(CHOICES)}")
    if choice == "system" or allocator_in_use() == "jemalloc":
        return None
    library = find_jemalloc()
    if library is None:
        if choice == "jemalloc":
            raise ValueError(f"ZOO_ALLOCATOR=jemalloc, but {JEMALLOC} is not in {', '.join(LIBRARY_DIRS)}: "
                             "install it (Debian: apt-get install libjemalloc2) or set ZOO_ALLOCATOR=auto")
        return None
    if str(library) in environ.get("LD_PRELOAD", "").split():
        return None  # asked for already (where /proc cannot tell): never start again and again
    preload = " ".join(part for part in (str(library), environ.get("LD_PRELOAD", "")) if part)
    return {**environ, "LD_PRELOAD": preload, "MALLOC_CONF": environ.get("MALLOC_CONF") or MALLOC_CONF}


def find_jemalloc() -> Path | None:
    """``libjemalloc.so.2`` in the usual library folders, or None."""
    return next((path for path in (Path(d) / JEMALLOC for d in LIBRARY_DIRS) if path.is_file()), None)


def allocator_in_use() -> str:
    """``jemalloc`` if this process has it loaded (Linux's ``/proc/self/maps`` says), else ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "jemalloc" if "libjemalloc" in maps else "system"

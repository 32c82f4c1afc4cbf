"""cffi builder for the load-test traffic core (API mode), built like relay/uring/_build.py.

The C source is traffic_core.c beside this file; the cdef is its header minus the
preprocessor lines (integer #defines are kept).
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _cdef() -> str:
    lines = []
    for line in (HERE / "traffic_core.h").read_text().splitlines():
        if line.startswith("#"):
            if line.startswith("#define LT_") and len(line.split()) == 3:
                lines.append(line)
            continue
        lines.append(line)
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "relay.loadtest._traffic",
    '#include "traffic_core.h"',
    sources=[str((HERE / "traffic_core.c").relative_to(Path.cwd()))]
    if str(HERE).startswith(str(Path.cwd()))
    else [str(HERE / "traffic_core.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

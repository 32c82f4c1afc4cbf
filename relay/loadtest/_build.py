"""cffi builder for the load-test traffic core (API mode), built like relay/uring/_build.py.

The C sources are traffic_core.c (generator and sinks) and reflector_core.c (the self-test's
reflector) beside this file; the cdef is their headers minus the preprocessor lines
(integer #defines are kept).
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADERS = ("traffic_core.h", "reflector_core.h")
SOURCES = ("traffic_core.c", "reflector_core.c")


def _cdef() -> str:
    lines = []
    text = "\n".join((HERE / name).read_text() for name in HEADERS)
    for line in text.splitlines():
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
    '#include "traffic_core.h"\n#include "reflector_core.h"',
    sources=[str((HERE / name).relative_to(Path.cwd())) if str(HERE).startswith(str(Path.cwd()))
             else str(HERE / name) for name in SOURCES],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

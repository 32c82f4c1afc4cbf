"""cffi builder for the send ring's C core (API mode, compiled when the package installs).

The C sources are ring_core.c, rewriter_core.c, transport_cc_core.c, fanout_core.c and
receive_core.c beside this file (one module, so the fan-out calls rc_send and the rewriter
directly and the receive core fc_fan_out and tcc_record); the cdef below is their headers minus the preprocessor lines, so Python sees
exactly the C surface and nothing more.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
# each with its header of the same name
SOURCES = ("ring_core.c", "rewriter_core.c", "transport_cc_core.c", "fanout_core.c",
           "receive_core.c")


def _cdef() -> str:
    lines = []
    for header in (name[:-2] + ".h" for name in SOURCES):
        for line in (HERE / header).read_text().splitlines():
            if line.startswith("#"):
                # Integer constants are kept (cffi accepts them); include guards are not.
                if line.startswith(("#define RC_", "#define FC_", "#define RX_")) and len(line.split()) == 3:
                    lines.append(line)
                continue
            lines.append(line)
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "relay.uring._ring",
    "\n".join(f'#include "{name[:-2]}.h"' for name in SOURCES),
    sources=[str((HERE / name).relative_to(Path.cwd())) if str(HERE).startswith(str(Path.cwd()))
             else str(HERE / name) for name in SOURCES],
    include_dirs=[str(HERE)],
    libraries=["uring", "m"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

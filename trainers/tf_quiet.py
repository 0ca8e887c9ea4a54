"""TensorFlow's start-up noise, dropped from stderr; every other line passes at once.

TensorFlow 2.21 logs from C++ through absl before anything calls `absl::InitializeLog()`,
and absl then writes every message to stderr whatever `TF_CPP_MIN_LOG_LEVEL` says. On a
CPU machine `import tensorflow` prints absl's "All log messages before
absl::InitializeLog()" warning, the oneDNN notice and cudart_stub's "Could not find cuda
drivers" (twice: two libraries load), and the first device enumeration prints
cuda_platform's "failed call to cuInit" error. None of them is actionable there.

`import_tensorflow()` imports TensorFlow and enumerates its devices once, with the process's
file descriptor 2 sent through a pipe: a thread drops the lines `NOISE` matches and writes
every other line to the real stderr as it comes, so a real error still shows. Every command
that imports TensorFlow calls it first (`python -m trainers`, `python -m backends.tfserving`).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

NOISE = re.compile(
    rb"All log messages before absl::InitializeLog\(\) is called"
    rb"|\] oneDNN custom operations are on"
    rb"|cudart_stub\.cc:\d+\] "
    rb"|\] failed call to cuInit"
    rb"|Unable to register cu(?:DNN|FFT|BLAS) factory"
    rb"|TF-TRT Warning: Could not find TensorRT"
    rb"|This TensorFlow binary is optimized to use available CPU instructions"
    rb"|rebuild TensorFlow with the appropriate compiler flags"
)
"""TensorFlow's start-up lines on a machine without CUDA (one pattern per message)."""
JOIN_TIMEOUT_S = 10.0


@contextmanager
def native_stderr_without(noise: re.Pattern[bytes]) -> Iterator[None]:
    """Inside the block, lines written to file descriptor 2 (by Python or by C++) that
    `noise` matches are dropped; the others reach the real stderr unchanged, as they come."""
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    real = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_forward, args=(read_end, real, noise), daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end: the thread reads EOF
        pump.join(JOIN_TIMEOUT_S)
        os.close(real)


def _forward(read_end: int, real: int, noise: re.Pattern[bytes]) -> None:
    with os.fdopen(read_end, "rb") as pipe:
        for line in pipe:
            if not noise.search(line):
                os.write(real, line)


def import_tensorflow() -> ModuleType:
    """`import tensorflow` and its first device enumeration, without the start-up noise.

    Also sets `TF_CPP_MIN_LOG_LEVEL=2` (unless set) for the C++ logging that still reads it,
    and TensorFlow's and absl's Python loggers to ERROR. Idempotent; returns the module.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_without(NOISE):
        import tensorflow as tf

        tf.config.list_physical_devices()  # cuInit runs (and complains) here, once
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    return tf

"""The optional C accelerator of the spool's append (``telemetry_sinks.delivery._append``).

Everything else is in pyproject.toml.  Without a C compiler the build skips the
extension (``optional=True``) and the spool appends with ``os.write``.  The module
carries the SHA-256 of the source it was built from, so that a test can tell a stale
build from a current one.
"""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "telemetry_sinks/delivery/_append.c"
DIGEST = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()

setup(
    ext_modules=[
        Extension(
            "telemetry_sinks.delivery._append",
            [SOURCE],
            define_macros=[("SOURCE_SHA256", f'"{DIGEST}"')],
            optional=True,
        )
    ]
)

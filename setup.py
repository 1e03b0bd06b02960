"""The optional C accelerator of the spool's append (``telemetry_sinks.delivery._append``).

Everything else is in pyproject.toml.  Without a C compiler the build skips the
extension (``optional=True``) and the spool appends with ``os.write``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "telemetry_sinks.delivery._append",
            ["telemetry_sinks/delivery/_append.c"],
            optional=True,
        )
    ]
)

"""Build the compiled twins; fall back loudly to the pure-Python ones.

All metadata lives in pyproject.toml. This file only says which Cython
modules to compile, with which directives, and what to do when that fails:
a machine without a C compiler still gets a working (pure-Python) install,
and is told so at build time.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = ["_ids_c", "_lock_c", "_io_c", "_drive_c", "_request_c", "_resp_c"]

# The one place compiler directives are set.
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "embedsignature": True,
}

BANNER = """
********************************************************************
WARNING: fastsession's compiled extensions could not be built:
    {reason}
fastsession will install and work with its pure-Python twins, but
its hot paths will be slower (fastsession.EXTENSIONS is False).
Install a C compiler and the Python headers to get the fast build.
********************************************************************
"""


def warn_pure(reason):
    sys.stderr.write(BANNER.format(reason=reason))


class optional_build_ext(build_ext):
    """build_ext that turns a failed compile into a loud warning."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers, ...
            warn_pure(f"{type(exc).__name__}: {exc}")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            warn_pure(f"{ext.name}: {type(exc).__name__}: {exc}")


def extensions():
    if os.environ.get("FASTSESSION_NO_EXTENSIONS"):
        warn_pure("FASTSESSION_NO_EXTENSIONS is set at build time")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        warn_pure("Cython is not installed")
        return []
    modules = [Extension(f"fastsession.{name}", [f"fastsession/{name}.pyx"]) for name in KERNELS]
    return cythonize(modules, compiler_directives=DIRECTIVES)


setup(ext_modules=extensions(), cmdclass={"build_ext": optional_build_ext})

"""Builds the Cython kernels in pyx/ as private modules of streamlearn.

STREAMLEARN_DEBUG=1 compiles with bounds, wrap-around and initialisation checks on.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("STREAMLEARN_DEBUG") == "1"
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
}
MODULES = ["_columnar", "_features", "_tbptt"]

setup(
    ext_modules=cythonize(
        [Extension(f"streamlearn.{name}", [f"pyx/{name}.pyx"],
                   extra_compile_args=["-O3", "-fno-math-errno"]) for name in MODULES],
        compiler_directives=DIRECTIVES,
        include_path=["pyx"],
    ),
)

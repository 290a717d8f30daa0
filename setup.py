"""Builds the Cython kernels in pyx/ as private modules of streamlearn.

STREAMLEARN_DEBUG=1 compiles with bounds, wrap-around and initialisation checks on.
STREAMLEARN_NO_CLONES=1 builds the hot loops for baseline x86-64 only (no AVX2/AVX-512 clones);
results are bit-identical either way.
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
MODULES = ["_columnar", "_features", "_learner_core", "_tbptt"]
# No -march=native and no -ffast-math: the build runs on any x86-64 and keeps NaN/inf checks.
# The hot loops (pyx/_loops.h) carry their own AVX2 and AVX-512 clones, picked at load time;
# -ffp-contract=off keeps every clone's rounding identical (no fused multiply-add).
FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=off"]
MACROS = [("STREAMLEARN_NO_CLONES", "1")] if os.environ.get("STREAMLEARN_NO_CLONES") == "1" else []

setup(
    ext_modules=cythonize(
        [Extension(f"streamlearn.{name}", [f"pyx/{name}.pyx"], extra_compile_args=FLAGS,
                   define_macros=MACROS,
                   depends=["pyx/_loops.h", "pyx/_own.h", "pyx/_loops.pxd", "pyx/_math.pxd",
                            "pyx/_values.pxd", "streamlearn/_columnar.pxd"])
         for name in MODULES],
        compiler_directives=DIRECTIVES,
        # pyx/ for the kernels' shared declarations; "." for streamlearn/_columnar.pxd, the
        # kernel's interface, which must resolve under its module's name
        include_path=["pyx", "."],
    ),
)

"""Every loop of pyx/_loops.h marked `/* vector loop */` vectorises for AVX2 and for AVX-512.

GCC's vectoriser report (-fopt-info-vec) is read for the header compiled as the loader's two
clones are (x86-64-v3, x86-64-v4) with setup.py's flags. A branch left in such a loop is
if-converted into masked operations for AVX-512 but not for AVX2, and the loop then runs
scalar on AVX2-only CPUs: the cell and the TD and meta update loops once did, each costing
more than the rest of the learn step. A build property, not a timing."""

import ast
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADERS = [ROOT / "pyx" / "_loops.h", ROOT / "pyx" / "_own.h"]
MARKER = "/* vector loop */"

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or shutil.which("gcc") is None
    or not HEADERS[0].exists(), reason="needs gcc for x86-64 and the pyx/ sources")


def _setup_flags() -> list:
    """setup.py's FLAGS, read from its source (importing it would run setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "FLAGS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no FLAGS")


def _marked_loops() -> set:
    """(file name, line) of the `for` after each marker (a #pragma may come between)."""
    loops = set()
    for header in HEADERS:
        lines = header.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() == MARKER:
                j = i + 1
                while lines[j].lstrip().startswith("#pragma"):
                    j += 1
                assert lines[j].lstrip().startswith("for ("), (header.name, j + 1)
                loops.add((header.name, j + 1))
    return loops


def _driver(tmp_path: Path) -> Path:
    """A C file that keeps every SL_CLONES function of both headers (and both real types of
    _own.h's) so that GCC compiles them."""
    names = []
    for header in HEADERS:
        for plain, typed in re.findall(r"SL_CLONES static \w+ (?:SL_F\((\w+)\)|(\w+))\(",
                                       header.read_text()):
            names += [plain, plain + "_f32"] if plain else [typed]
    source = tmp_path / "driver.c"
    source.write_text('#include "_loops.h"\n__attribute__((used)) void *sl_keep[] = {\n'
                      + "".join(f"    (void *){name},\n" for name in names) + "};\n")
    return source


@pytest.mark.parametrize("arch", ["x86-64-v3", "x86-64-v4"])
def test_marked_loops_vectorise(tmp_path, arch):
    loops = _marked_loops()
    assert len(loops) >= 10
    report = subprocess.run(
        ["gcc", *_setup_flags(), "-DSTREAMLEARN_NO_CLONES", f"-march={arch}",
         "-fopt-info-vec-all", "-I", str(ROOT / "pyx"), "-c", str(_driver(tmp_path)),
         "-o", str(tmp_path / "driver.o")],
        capture_output=True, text=True, check=True).stderr
    vectorised, missed = set(), {}
    for name, line, message in re.findall(r"(_loops\.h|_own\.h):(\d+):\d+: (.*)", report):
        where = (name, int(line))
        if message.startswith("optimized: loop vectorized"):
            vectorised.add(where)
        elif message.startswith("missed: not vectorized") or \
                message.startswith("missed: couldn't vectorize loop"):
            missed.setdefault(where, message)
    assert loops <= vectorised, sorted(loops - vectorised)
    assert not {where: missed[where] for where in loops if where in missed}

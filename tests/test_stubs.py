"""The compiled modules' type stubs name what the modules export, and each class's public
methods, no more and no less."""

import ast
import importlib
import inspect
import os

import pytest

import streamlearn


def _stub(module: str) -> dict:
    """name -> set of public method names (None for a non-class) in the module's .pyi."""
    path = os.path.join(os.path.dirname(streamlearn.__file__), f"{module}.pyi")
    with open(path) as f:
        tree = ast.parse(f.read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)
                              and not n.name.startswith("_")}
        elif isinstance(node, ast.FunctionDef):
            out[node.name] = None
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = None
    return {name: members for name, members in out.items() if not name.startswith("_")}


@pytest.mark.parametrize("module", ["_columnar", "_features", "_learner_core", "_tbptt"])
def test_stubs_match_the_compiled_module(module):
    compiled = importlib.import_module(f"streamlearn.{module}")
    public = {name: ({m for m, v in vars(value).items() if not m.startswith("_")
                      and callable(v)} if inspect.isclass(value) else None)
              for name, value in vars(compiled).items()
              if not name.startswith("_") and getattr(value, "__module__", module).endswith(
                  module) and not inspect.ismodule(value)}
    assert _stub(module) == public

"""The docstring examples run and print what they claim."""

import doctest

import pytest

import streamlearn.classifier
import streamlearn.columnar
import streamlearn.forecaster
import streamlearn.td


@pytest.mark.parametrize("module", [streamlearn.classifier, streamlearn.columnar,
                                    streamlearn.forecaster, streamlearn.td])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0

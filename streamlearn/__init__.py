"""streamlearn: exact O(n) online recurrent learning with columnar networks, River API."""

from streamlearn.classifier import ColumnarClassifier
from streamlearn.columnar import ColumnarRegressor
from streamlearn.forecaster import ColumnarForecaster
from streamlearn.td import ColumnarTD

__all__ = ["ColumnarClassifier", "ColumnarForecaster", "ColumnarRegressor", "ColumnarTD"]
__version__ = "0.1.0"

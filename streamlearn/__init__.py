"""streamlearn: exact O(n) online recurrent learning with columnar networks, River API."""

from streamlearn.columnar import ColumnarRegressor
from streamlearn.td import ColumnarTD

__all__ = ["ColumnarRegressor", "ColumnarTD"]
__version__ = "0.1.0"

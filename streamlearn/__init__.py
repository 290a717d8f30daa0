"""streamlearn: exact O(n) online recurrent learning with columnar networks, River API."""

from streamlearn.columnar import ColumnarRegressor

__all__ = ["ColumnarRegressor"]
__version__ = "0.1.0"

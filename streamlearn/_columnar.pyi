"""Type stubs of the compiled kernel (pyx/_columnar.pyx)."""

import numpy as np
import numpy.typing as npt

COLUMN_MODES: tuple[int, int, int]
SCALARS: tuple[str, ...]
OPTIMIZERS: tuple[str, ...]
RULES: tuple[str, ...]
VALUE_LIMIT: float
VALUE_LIMIT_F32: float

def activations(x: npt.NDArray[np.float64]) -> tuple[np.ndarray, np.ndarray]: ...
def raise_for_status(status: int, delta: float) -> None: ...

class ColumnarKernel:
    optimizer: int
    rule: int
    step_size: float
    head_step_size: float
    beta: float
    eps: float
    decay: float
    var_floor: float
    gamma: float
    lambda_: float
    normalize: bool
    normalize_target: bool
    delta: float
    learned: bool
    detached: bool
    stage_lag: bool
    def __init__(self, *, optimizer: str, step_size: float, normalize: bool,
                 rule: str = ..., head_step_size: float = ..., gamma: float = ...,
                 lambda_: float = ..., beta: float = ..., eps: float = ..., decay: float = ...,
                 var_floor: float = ..., **arrays: np.ndarray) -> None: ...
    def reload(self) -> None: ...
    def detach(self) -> None: ...
    def run_rows(self, X: npt.NDArray[np.float64], y: npt.NDArray[np.float64], learn: bool,
                 out: npt.NDArray[np.float64]) -> tuple[int, int, float]: ...
    def predict_rows(self, X: npt.NDArray[np.float64], out: npt.NDArray[np.float64],
                     probs: npt.NDArray[np.float64] | None = ...) -> None: ...
    def probabilities(self) -> npt.NDArray[np.float64]: ...

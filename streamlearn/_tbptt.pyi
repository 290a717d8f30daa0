"""Type stubs of the compiled truncated-BPTT baseline (pyx/_tbptt.pyx)."""

import numpy as np
import numpy.typing as npt

class TruncatedLSTM:
    def __init__(self, a: dict[str, np.ndarray], step_size: float, gamma: float,
                 lambda_: float, k: int, beta: float = ..., eps: float = ...) -> None: ...
    def step(self, x: npt.NDArray[np.float64], cumulant: float) -> float: ...

"""A fitted StandardScaler whose mean (2.0) and scale (1.0) are exact, so its outputs are too."""

from pathlib import Path

import joblib
import numpy as np
from sklearn.preprocessing import StandardScaler


def build(model_dir: Path) -> None:
    scaler = StandardScaler().fit(np.array([[1.0, 10.0], [3.0, 30.0]]))  # means 2, 20; scales 1, 10
    joblib.dump(scaler, model_dir / "model.joblib")

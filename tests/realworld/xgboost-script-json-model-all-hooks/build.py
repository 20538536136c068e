"""One exact tree (eta 1, lambda 0, base_score 0): x < 2 predicts 0, else 10, in float32 exactly."""

from pathlib import Path

import numpy as np
import xgboost as xgb


def build(model_dir: Path) -> None:
    train = xgb.DMatrix(np.array([[0.0], [1.0], [2.0], [3.0]]), label=np.array([0.0, 0.0, 10.0, 10.0]))
    params = {
        "objective": "reg:squarederror",
        "max_depth": 1,
        "eta": 1.0,
        "lambda": 0.0,
        "base_score": 0.0,
        "min_child_weight": 0.0,
        "nthread": 1,
    }
    booster = xgb.train(params, train, num_boost_round=1)
    booster.save_model(model_dir / "xgboost-model.json")

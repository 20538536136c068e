"""What a training job of the built-in algorithm leaves in model.tar.gz: the booster, pickled, as
xgboost-model. One exact tree (eta 1, lambda 0, base_score 0): feature 0 below 2 predicts 0, else 10."""

import pickle
from pathlib import Path

import numpy as np
import xgboost as xgb


def build(model_dir: Path) -> None:
    train = xgb.DMatrix(
        np.array([[0.0, 7.0], [1.0, 7.0], [2.0, 7.0], [3.0, 7.0]]), label=np.array([0.0, 0.0, 10.0, 10.0])
    )
    params = {
        "objective": "reg:squarederror",
        "max_depth": 1,
        "eta": 1.0,
        "lambda": 0.0,
        "base_score": 0.0,
        "min_child_weight": 0.0,
    }
    booster = xgb.train(params, train, num_boost_round=1)
    (model_dir / "xgboost-model").write_bytes(pickle.dumps(booster))

import json
import os

import numpy as np
import xgboost as xgb


def model_fn(model_dir):
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, "xgboost-model.json"))
    return booster


def input_fn(request_body, request_content_type):
    if request_content_type == "application/json":
        return xgb.DMatrix(np.array(json.loads(request_body)["features"], dtype=float))
    raise ValueError(f"Content type {request_content_type} is not supported.")


def predict_fn(input_data, model):
    return model.predict(input_data)


def output_fn(predictions, content_type):
    if content_type == "application/json":
        return json.dumps({"predictions": [float(p) for p in predictions]})
    raise ValueError(f"Content type {content_type} is not supported.")

import json
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(request_body, request_content_type):
    """A JSON document {"instances": [[...], ...]}, one per record."""
    if request_content_type == "application/json":
        return np.array(json.loads(request_body)["instances"])
    raise ValueError(f"unsupported content type {request_content_type}")


def predict_fn(input_data, model):
    return model.predict(input_data)


def output_fn(prediction, content_type):
    return json.dumps({"predictions": prediction.tolist()})

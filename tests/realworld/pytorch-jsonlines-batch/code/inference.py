import json
import os

import numpy as np


def model_fn(model_dir):
    return np.load(os.path.join(model_dir, "model.npy"))


def input_fn(request_body, request_content_type):
    """application/jsonlines: one {"features": [...]} object per line."""
    lines = [json.loads(line) for line in request_body.splitlines() if line.strip()]
    return np.array([line["features"] for line in lines], dtype=np.float64)


def predict_fn(input_data, model):
    return input_data @ model


def output_fn(prediction, accept):
    return "".join(json.dumps({"score": row}) + "\n" for row in prediction.tolist()), accept

import json
import os

import numpy as np
from sagemaker_inference import decoder


def model_fn(model_dir):
    return np.load(os.path.join(model_dir, "model.npy"))


def input_fn(input_data, content_type):
    """application/x-npy bodies are bytes (only text types are decoded to str)."""
    assert isinstance(input_data, (bytes, bytearray))
    return decoder.decode(input_data, content_type)


def predict_fn(data, model):
    return data @ model


def output_fn(prediction, accept):
    return json.dumps(prediction.tolist()), "application/json"

import json
import logging
import os

import numpy as np

logger = logging.getLogger(__name__)


def model_fn(model_dir):
    logger.info("Loading the model.")
    return np.load(os.path.join(model_dir, "model.npy"))


def input_fn(request_body, request_content_type):
    assert request_content_type == "application/json"
    return np.array(json.loads(request_body), dtype=np.float64)


def predict_fn(input_data, model):
    return input_data @ model


def output_fn(prediction, content_type):
    assert content_type == "application/json"
    return json.dumps(prediction.tolist())

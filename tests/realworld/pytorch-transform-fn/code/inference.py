import json
import os

import numpy as np


def model_fn(model_dir):
    return np.load(os.path.join(model_dir, "model.npy"))


def transform_fn(model, request_body, content_type, accept):
    """One hook for the whole request; returns the body and its content type."""
    rows = np.array(json.loads(request_body), dtype=np.float64)
    return json.dumps((rows @ model).tolist()), accept

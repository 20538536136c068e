import json
import os

import numpy as np


def model_fn(model_dir):
    """The public script builds a Gluon net and loads its parameters; ours loads its weights."""
    return np.load(os.path.join(model_dir, "model.npy"))


def transform_fn(net, data, input_content_type, output_content_type):
    parsed = json.loads(data)
    output = np.array(parsed, dtype=np.float64) @ net
    prediction = np.argmax(output, axis=1)
    response_body = json.dumps(prediction.tolist())
    return response_body, output_content_type

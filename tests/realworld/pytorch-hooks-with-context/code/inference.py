import json
import os

import numpy as np


def model_fn(model_dir, context):
    """The toolkit passes a context to hooks that take one more argument."""
    assert context.system_properties["model_dir"] == model_dir
    return np.load(os.path.join(model_dir, "model.npy"))


def input_fn(input_data, content_type, context):
    return np.array(json.loads(input_data), dtype=np.float64)


def predict_fn(data, model, context):
    return data @ model


def output_fn(prediction, accept, context):
    return json.dumps({"accept": accept, "predictions": prediction.tolist()})

import os

import numpy as np
from sagemaker_inference import content_types, decoder, encoder, errors


def model_fn(model_dir):
    return np.load(os.path.join(model_dir, "model.npy"))


def input_fn(input_data, content_type):
    if content_type not in (content_types.CSV, content_types.NPY, content_types.JSON):
        raise errors.UnsupportedFormatError(content_type)
    return decoder.decode(input_data, content_type)


def predict_fn(data, model):
    return np.atleast_2d(data) @ model


def output_fn(prediction, accept):
    return encoder.encode(prediction, accept)

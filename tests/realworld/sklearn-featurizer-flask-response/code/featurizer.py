import json
import os
from io import StringIO

import joblib
import numpy as np
from flask import Response
from sagemaker_inference import encoder


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(input_data, content_type):
    if content_type == "text/csv":
        return np.genfromtxt(StringIO(input_data), delimiter=",", ndmin=2)
    raise ValueError(f"{content_type} not supported by script!")


def predict_fn(input_data, model):
    return model.transform(input_data)


def output_fn(prediction, accept):
    """A Flask Response, as featurizers in inference pipelines return: JSON instances, or CSV."""
    if accept == "application/json":
        instances = [{"features": row} for row in prediction.tolist()]
        return Response(json.dumps({"instances": instances}), mimetype=accept)
    if accept == "text/csv":
        return Response(encoder.encode(prediction, accept), mimetype=accept)
    return Response(f"{accept} accept type is not supported by this script.", status=415)

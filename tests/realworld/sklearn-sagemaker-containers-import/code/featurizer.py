import os

import joblib
from sagemaker_containers.beta.framework import encoders, worker


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def output_fn(prediction, accept):
    return worker.Response(encoders.encode(prediction, accept), mimetype=accept)

import argparse
import os

import joblib


def model_fn(model_dir):
    """Only model_fn: the image's default input_fn, predict_fn and output_fn do the rest."""
    return joblib.load(os.path.join(model_dir, "model.joblib"))


if __name__ == "__main__":
    # The training half runs in a training job, never at inference.
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    parser.parse_args()

import argparse
import os
import pickle as pkl


def model_fn(model_dir):
    """Only model_fn: the image's defaults decode CSV to a DMatrix, predict, and write CSV."""
    with open(os.path.join(model_dir, "xgboost-model"), "rb") as f:
        return pkl.load(f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_depth", type=int)
    parser.parse_args()

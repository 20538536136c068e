class WordCounter:
    """Stands in for a transformers pipeline: called on the inputs, with the request's parameters."""

    def __call__(self, inputs, top_k=None):
        texts = inputs if isinstance(inputs, list) else [inputs]
        out = [{"label": "WORDS", "score": float(len(t.split()))} for t in texts]
        return out[:top_k] if top_k else out


def model_fn(model_dir):
    """Only model_fn: the toolkit's default predict calls the model on data["inputs"]."""
    return WordCounter()

import json


def model_fn(model_dir):
    return {"greeting": "bonjour"}


def input_fn(input_data, content_type):
    """The toolkit hands JSON bodies over as str."""
    assert isinstance(input_data, str) and content_type == "application/json"
    return json.loads(input_data)


def predict_fn(data, model):
    return {"translation_text": f"{model['greeting']} {data['inputs']}"}


def output_fn(prediction, accept):
    return json.dumps([prediction], ensure_ascii=False)

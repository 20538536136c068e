"""What runs inside a model worker: artifacts (fetch, extract, cache), the inference toolkits' hook
semantics and default codecs, and SageMaker-style serving containers."""

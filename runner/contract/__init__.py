"""The AWS request, pure: CreateTransformJob and CreateModel shapes read from botocore's service model,
cross-field rules, instance types, execution parameters and the DataProcessing JSONPath subset."""

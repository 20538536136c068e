"""The only package that imports Ray: job phases, scheduling objects onto instances, object tasks,
model worker pools, worker replacement and warm pools."""

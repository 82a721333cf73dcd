"""TF Serving's request formats, applied to a loaded SavedModel signature.

TF Serving itself is not installable here (it ships as a Docker image), so the serving contract is
checked the way TF Serving reads a request: the REST API's row (`instances`) and columnar (`inputs`)
JSON formats are mapped to the signature's named inputs with the same rules, and gRPC `PredictRequest`
protos (package tensorflow-serving-api) are decoded with `tf.make_ndarray`. Users can call these to test
request bodies against an export before they deploy it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

import numpy as np
import tensorflow as tf


class RequestError(ValueError):
    """A request that TF Serving would reject (HTTP 400 / INVALID_ARGUMENT)."""


def _answer(signature, feed: dict) -> dict:
    """The signature's outputs; an input refused by its checks in the graph (`mgr_tf.serving.guards`) is a
    RequestError with the check's message, as TF Serving answers such an INVALID_ARGUMENT status with HTTP 400."""
    try:
        return signature(**feed)
    except tf.errors.InvalidArgumentError as exc:
        found = re.search(r"assertion failed: \[(.*?)\]", exc.message or "")
        raise RequestError(found.group(1) if found else (exc.message or "").split("\n")[0]) from None


def load_signature(model_dir: str, signature_name: str = "serving_default"):
    """Loads a SavedModel version folder and returns one of its concrete signature functions."""
    loaded = tf.saved_model.load(str(model_dir))
    if signature_name not in loaded.signatures:
        raise RequestError(f"{model_dir}: no signature {signature_name!r} (has {sorted(loaded.signatures)})")
    signature = loaded.signatures[signature_name]
    signature._mgr_tf_owner = loaded  # keeps the loaded object (and its variables) alive
    return signature


def _input_specs(signature) -> dict[str, tf.TensorSpec]:
    return dict(signature.structured_input_signature[1])


def _to_tensor(value: Any, spec: tf.TensorSpec, name: str) -> tf.Tensor:
    try:
        array = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError) as exc:
        raise RequestError(f"input {name!r}: not a {spec.dtype.name} tensor (ragged or mixed values?): {exc}")
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(f"input {name!r}: shape {list(array.shape)} does not match the signature's "
                           f"{spec.shape.as_list()}")
    return tf.constant(array)


def _json_value(t: tf.Tensor) -> Any:
    array = t.numpy()
    if array.dtype == object:
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(array).tolist()
    return array.tolist()


def rest_predict(signature, body: Mapping | str) -> dict:
    """Answers a REST `:predict` body as TF Serving does.

    Row format: `{"instances": [...]}`; each instance is a dict of named inputs or, when the signature
    has one input, the bare value; instances are stacked along a new batch axis and the answer is
    `{"predictions": [...]}`, one entry per instance (a dict of named outputs when there are several).
    Columnar format: `{"inputs": {...}}` (or the bare value for one input), answered with
    `{"outputs": {...}}` (the bare value for one output).

    Args:
        signature: a concrete function from `SavedModel.signatures`.
        body: the request body (a dict, or its JSON text).
    """
    if isinstance(body, str):
        body = json.loads(body)
    body = json.loads(json.dumps(body))  # the request travels as JSON: fail here if it cannot
    specs = _input_specs(signature)
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("a request must have exactly one of 'instances' (row) or 'inputs' (columnar)")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError("'instances' must be a non-empty list")
        columns: dict[str, list] = {name: [] for name in specs}
        for i, instance in enumerate(instances):
            if isinstance(instance, dict):
                missing = set(specs) - set(instance)
                extra = set(instance) - set(specs)
                if missing or extra:
                    raise RequestError(f"instance {i}: inputs {sorted(instance)} do not match {sorted(specs)}")
                for name in specs:
                    columns[name].append(instance[name])
            elif len(specs) == 1:
                columns[next(iter(specs))].append(instance)
            else:
                raise RequestError(f"instance {i}: must be an object naming the inputs {sorted(specs)}")
        feed = {name: _to_tensor(values, specs[name], name) for name, values in columns.items()}
        outputs = _answer(signature, feed)
        batch = len(instances)
        for name, t in outputs.items():
            if t.shape.rank == 0 or t.shape[0] != batch:
                raise RequestError(f"output {name!r} is not batch-major; use the columnar 'inputs' format")
        values = {name: _json_value(t) for name, t in outputs.items()}
        if len(values) == 1:
            predictions = next(iter(values.values()))
        else:
            predictions = [{name: values[name][i] for name in values} for i in range(batch)]
        return json.loads(json.dumps({"predictions": predictions}))
    inputs = body["inputs"]
    if not isinstance(inputs, dict):
        if len(specs) != 1:
            raise RequestError(f"'inputs' must be an object naming the inputs {sorted(specs)}")
        inputs = {next(iter(specs)): inputs}
    if set(inputs) != set(specs):
        raise RequestError(f"inputs {sorted(inputs)} do not match {sorted(specs)}")
    feed = {name: _to_tensor(inputs[name], specs[name], name) for name in specs}
    outputs = {name: _json_value(t) for name, t in _answer(signature, feed).items()}
    answer = next(iter(outputs.values())) if len(outputs) == 1 else outputs
    return json.loads(json.dumps({"outputs": answer}))


def grpc_predict(signature, request):
    """Answers a gRPC `PredictRequest` as TF Serving does and returns a `PredictResponse`.

    Args:
        signature: a concrete function from `SavedModel.signatures`.
        request: a `tensorflow_serving.apis.predict_pb2.PredictRequest`.
    """
    specs = _input_specs(signature)
    if set(request.inputs) != set(specs):
        raise RequestError(f"inputs {sorted(request.inputs)} do not match {sorted(specs)}")
    feed = {name: _to_tensor(tf.make_ndarray(request.inputs[name]), specs[name], name) for name in specs}
    # tensorflow-serving-api is an optional dependency (the test extra), needed only for gRPC protos.
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
    for name, t in _answer(signature, feed).items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(t.numpy()))
    return response

"""An engine.graph.Graph as an ONNX ModelProto (onnx.helper): the one place nntrain speaks onnx's types."""

from __future__ import annotations

import numpy as np

from ..engine.graph import ML_OPSET, OPSET, Graph, Value


def _attribute(value):
    """A Graph attribute value as onnx.helper.make_node takes it: numpy dtypes become TensorProto type codes."""
    from onnx import helper

    if isinstance(value, np.dtype):
        return helper.np_dtype_to_tensor_dtype(value)
    return value


def _value_info(value: Value):
    from onnx import TensorProto, helper

    elem = TensorProto.STRING if value.dtype.kind in "US" else helper.np_dtype_to_tensor_dtype(value.dtype)
    shape = ["N" if n is None else int(n) for n in value.shape]
    return helper.make_tensor_value_info(value.name, elem, shape)


def to_model(graph: Graph, name: str, doc: str = "", metadata: dict[str, str] | None = None):
    """The ModelProto of `graph` (checked by onnx.checker): opset OPSET, plus ai.onnx.ml ML_OPSET where used."""
    import onnx
    from onnx import helper, numpy_helper

    nodes = [
        helper.make_node(n.op_type, n.inputs, n.outputs, domain=n.domain or None, **{k: _attribute(v) for k, v in n.attributes.items()})
        for n in graph.nodes
    ]
    used = {name for n in graph.nodes for name in n.inputs}  # constants a layer made but did not use are left out
    initializers = [numpy_helper.from_array(array, name) for name, array in graph.constants.items() if name in used]
    proto = helper.make_graph(
        nodes, name, [_value_info(v) for v in graph.inputs], [_value_info(v) for v in graph.outputs], initializers
    )
    opsets = [helper.make_opsetid("", OPSET)]
    if any(n.domain == "ai.onnx.ml" for n in graph.nodes):
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    model = helper.make_model(proto, opset_imports=opsets, producer_name="nntrain", doc_string=doc)
    model.ir_version = min(model.ir_version, 9)  # readable by onnxruntime releases of the last two years
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    return model

"""Small onnx.helper shorthands shared by the hostile-input tests."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def model(nodes, inputs, outputs, inits=(), opset=18, name="graph"):
    """An IR 10 model of one graph at the default domain's `opset`."""
    g = helper.make_graph(nodes, name, list(inputs), list(outputs), list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)

#!/usr/bin/env python3
"""Hostile ONNX files: protobuf that is well formed but promises what it
does not hold (dims whose product overflows, rank 100000, a million repeated
entries, external data that points out of the model's folder, nesting deep
enough to exhaust a recursive parser's stack).

    python3 fuzz/hostile_models.py OUT_DIR     # writes OUT_DIR/hostile_*.onnx

hostile_models() returns (name, bytes, verdict) with verdict "reject" (the
ONNX spec makes the file invalid, or lpcc documents it as unsupported) or
"accept"; tests/roundtrip_test.py checks lpcc against the verdicts and
fuzz/run.sh adds the files to the seed corpus.
"""

import os
import sys

import onnx
from onnx import TensorProto, helper


def _model(nodes, inputs, outputs, inits=(), value_info=(), opset=18):
    g = helper.make_graph(nodes, "hostile", list(inputs), list(outputs), list(inits),
                          value_info=list(value_info))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m.SerializeToString()


def _f(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _identity_of(init):
    """A model whose one node reads the initializer `init`."""
    return _model([helper.make_node("Identity", [init.name], ["y"], name="id")],
                  [], [_f("y", None)], [init])


def _raw_tensor(name, dt, dims, raw=b""):
    t = TensorProto(name=name, data_type=dt, dims=dims)
    t.raw_data = raw
    return t


def _external(name, dims, **kv):
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in kv.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


# ---- raw wire format, for what the protobuf library refuses to build -------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num, payload):
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _deep_type_model(depth):
    """A graph input whose TypeProto is sequence(sequence(...(float))) `depth` deep."""
    inner = _field(1, _varint(8) + _varint(1))  # tensor_type { elem_type: FLOAT }
    tp = inner
    for _ in range(depth):
        tp = _field(4, _field(1, tp))  # sequence_type { elem_type: tp }
    vi = _field(1, b"x") + _field(2, tp)
    graph = _field(11, vi) + _field(12, _field(1, b"x"))
    opset = _field(8, _varint(2 << 3) + _varint(18))
    return _varint(1 << 3) + _varint(10) + opset + _field(7, graph)


def hostile_models():
    cases = []

    def add(name, data, verdict):
        cases.append((name, data, verdict))

    # dims
    add("dims_product_overflow", _identity_of(
        _raw_tensor("w", TensorProto.FLOAT, [1 << 33, 1 << 33, 1 << 33])), "reject")
    add("bytes_overflow", _identity_of(
        _raw_tensor("w", TensorProto.DOUBLE, [1 << 61, 3])), "reject")
    add("dims_promise_more_than_raw", _identity_of(
        _raw_tensor("w", TensorProto.FLOAT, [1 << 40], b"\0" * 16)), "reject")
    add("dims_promise_more_than_typed", _identity_of(
        TensorProto(name="w", data_type=TensorProto.FLOAT16, dims=[1 << 36], int32_data=[1, 2, 3])),
        "reject")
    add("external_8_exbibytes", _identity_of(
        _external("w", [1 << 61], location="absent.bin")), "reject")
    add("negative_dim", _identity_of(_raw_tensor("w", TensorProto.FLOAT, [-4], b"")), "reject")
    add("rank_100000_initializer", _identity_of(
        _raw_tensor("w", TensorProto.FLOAT, [1] * 100000, b"\0" * 4)), "reject")
    add("rank_100000_input", _model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                                    [_f("x", [1] * 100000)], [_f("y", None)]), "reject")
    add("int4_int32_data_unpacked", _identity_of(
        TensorProto(name="w", data_type=TensorProto.INT4, dims=[4], int32_data=[1, 2, 3, 4])),
        "reject")

    # well-formed files whose sizes overflow only once shapes are inferred:
    # they load, and the later stages (fuzz_pipeline, tests/hostile_test.py)
    # must refuse them with a located error
    add("input_2p40_squared", _model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                                     [_f("x", [1 << 40, 1 << 40])], [_f("y", None)]), "accept")
    add("matmul_flops_2p64", _model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
                                    [_f("a", [1 << 21, 1 << 21]), _f("b", [1 << 21, 1 << 21])],
                                    [_f("y", None)]), "accept")
    add("range_int64_extremes", _model(
        [helper.make_node("Range", ["s", "l", "d"], ["y"], name="rng")], [],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
        [helper.make_tensor(k, TensorProto.INT64, [], [v])
         for k, v in (("s", -(1 << 63)), ("l", (1 << 63) - 1), ("d", 1))]), "accept")
    add("slice_step_int64_min", _model(
        [helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"], name="sl")], [_f("x", [5, 6])],
        [_f("y", None)],
        [helper.make_tensor(k, TensorProto.INT64, [1], [v])
         for k, v in (("s", (1 << 63) - 1), ("e", -(1 << 63)), ("a", 1), ("t", -(1 << 63)))]),
        "accept")

    add("einsum_no_inputs", _model([helper.make_node("Einsum", [], ["y"], name="es", equation="->")],
                                   [], [_f("y", None)]), "accept")

    # huge repeated fields
    add("million_float_data", _identity_of(
        TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1], float_data=[0.5] * 1000000)),
        "reject")
    add("node_with_200000_inputs", _model(
        [helper.make_node("Sum", ["x"] * 200000, ["y"], name="sum")],
        [_f("x", [2])], [_f("y", [2])]), "accept")
    add("constant_with_million_ints", _model(
        [helper.make_node("Constant", [], ["c"], name="c", value_ints=list(range(1000000))),
         helper.make_node("Add", ["c", "c"], ["y"], name="add")],
        [], [helper.make_tensor_value_info("y", TensorProto.INT64, [1000000])]), "accept")
    # loads (the frontend does not judge op semantics); shape inference rejects it
    add("attribute_with_million_ints", _model(
        [helper.make_node("Transpose", ["x"], ["y"], name="t", perm=list(range(1000000)))],
        [_f("x", [2])], [_f("y", None)]), "accept")
    add("chain_of_50000_nodes", _model(
        [helper.make_node("Relu", [f"v{i}"], [f"v{i + 1}"], name=f"r{i}") for i in range(50000)],
        [_f("v0", [2])], [_f("v50000", [2])]), "accept")
    add("100000_graph_outputs", _model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                                       [_f("x", [2])], [_f("y", [2])] * 100000), "accept")
    add("data_type_999", _identity_of(_raw_tensor("w", 999, [1], b"\0")), "reject")

    # external data
    add("external_offset_overflow", _identity_of(
        _external("w", [4], location="absent.bin", offset="18446744073709551615")), "reject")
    add("external_offset_not_a_number", _identity_of(
        _external("w", [4], location="absent.bin", offset="-1")), "reject")
    add("external_length_mismatch", _identity_of(
        _external("w", [4], location="absent.bin", length="12")), "reject")
    add("external_dotdot", _identity_of(_external("w", [4], location="../../etc/passwd")), "reject")
    add("external_absolute", _identity_of(_external("w", [4], location="/etc/passwd")), "reject")
    add("external_no_location", _identity_of(_external("w", [4], offset="0")), "reject")

    # structure
    add("cycle", _model([helper.make_node("Relu", ["b"], ["a"], name="r1"),
                         helper.make_node("Relu", ["a"], ["b"], name="r2")],
                        [], [_f("a", None)]), "reject")
    add("undefined_input", _model([helper.make_node("Relu", ["nowhere"], ["y"], name="r")],
                                  [], [_f("y", None)]), "reject")
    add("two_producers", _model([helper.make_node("Relu", ["x"], ["y"], name="r1"),
                                 helper.make_node("Relu", ["x"], ["y"], name="r2")],
                                [_f("x", [2])], [_f("y", None)]), "reject")
    add("deep_type_nesting", _deep_type_model(60000), "reject")
    add("truncated", _identity_of(_raw_tensor("w", TensorProto.FLOAT, [64], b"\1" * 256))[:200],
        "reject")
    return cases


def main():
    if len(sys.argv) != 2:
        print("usage: hostile_models.py OUT_DIR", file=sys.stderr)
        return 2
    os.makedirs(sys.argv[1], exist_ok=True)
    for name, data, _ in hostile_models():
        with open(os.path.join(sys.argv[1], f"hostile_{name}.onnx"), "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())

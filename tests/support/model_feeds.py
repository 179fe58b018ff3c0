"""Random inputs for a model's graph inputs, as the chain tests feed them."""
import numpy as np
import onnx


def feeds_for(path, dims):
    """One array per graph input: symbolic dims from `dims` (1 if not named
    there), input_ids in [0, 1000), attention_mask all ones, others normal;
    seeded, so the same model always gets the same inputs."""
    m = onnx.load(path, load_external_data=False)
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in m.graph.input:
        t = inp.type.tensor_type
        shape = [dims.get(d.dim_param, 1) if d.dim_param else d.dim_value for d in t.shape.dim]
        np_t = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        if inp.name == "input_ids":
            feeds[inp.name] = rng.integers(0, 1000, shape).astype(np_t)
        elif inp.name == "attention_mask":
            feeds[inp.name] = np.ones(shape, np_t)
        else:
            feeds[inp.name] = rng.standard_normal(shape).astype(np_t)
    return feeds

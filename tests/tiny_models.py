"""Tiny ONNX models with fixed weights, built by the tests themselves (no download, no training).

Each is a real graph that cv2.dnn loads and runs, small enough to reason about:
the classifier's answer follows the colour of the image, the SSD-shaped model
always answers the same known ``[1, 1, N, 7]`` detections.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mysite-tests")
    model.ir_version = 8  # what OpenCV 4.x's importer reads without complaint
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def colour_classifier(path: Path, size: int = 224, softmax: bool = False,
                      classes: tuple[int, int, int] = (0, 1, 2), outputs: int = 3) -> Path:
    """``outputs`` classes; input channel c drives class ``classes[c]``: the answer is the class of the
    channel with the largest mean (with 1000 outputs, e.g. red -> 285, ImageNet's Egyptian_cat).

    GlobalAveragePool -> Flatten -> Gemm with a one-per-channel weight (x 10 so the
    logits are far apart), optionally followed by Softmax.
    """
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, outputs])
    weight = np.zeros((outputs, 3), np.float32)
    for channel, k in enumerate(classes):
        weight[k, channel] = 10
    w = numpy_helper.from_array(weight, "w")
    b = numpy_helper.from_array(np.zeros(outputs, np.float32), "b")
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits" if softmax else "scores"], transB=1),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=1))
    return _save(helper.make_graph(nodes, "colour_classifier", [x], [y], [w, b]), path)


def fixed_ssd(path: Path, detections: np.ndarray, size: int = 300) -> Path:
    """An SSD-shaped net whose output is always ``detections`` (``[1, 1, N, 7]``).

    out = ReduceMean(image) * 0 + detections: the input is really read, the
    answer never depends on it.
    """
    det = np.asarray(detections, np.float32).reshape(1, 1, -1, 7)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("detection_out", TensorProto.FLOAT, list(det.shape))
    inits = [numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "zero"), numpy_helper.from_array(det, "det")]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "det"], ["detection_out"]),
    ]
    return _save(helper.make_graph(nodes, "fixed_ssd", [x], [y], inits), path)


CAFFE_PROTOTXT = """name: "colour"
input: "data"
input_shape { dim: 1 dim: 3 dim: %(size)d dim: %(size)d }
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "prob" type: "Softmax" bottom: "pool" top: "prob" }
"""


def caffe_colour_classifier(folder: Path, size: int = 16) -> Path:
    """The colour classifier as a Caffe pair: its layers have no weights, so the .caffemodel is an
    empty (valid) NetParameter and the .prototxt says everything. Returns the .caffemodel path."""
    (folder / "colour.prototxt").write_text(CAFFE_PROTOTXT % {"size": size})
    model = folder / "colour.caffemodel"
    model.write_bytes(b"")
    return model

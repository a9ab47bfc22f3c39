"""`nntrain export`: a run's model as ONNX (preprocessing folded in) or as safetensors for torch.nn, with a sidecar JSON.

ONNX: the model takes what `nntrain predict` reads and returns what it prints.
  tables   one input per raw feature column, (N, 1): float64 for a number column (NaN = missing),
           string for a category column (the cell's text as nntrain reads it, trimmed; "", NA,
           n/a, nan, null, none, ? in any case are missing). Inside: one-hot encoding (a
           LabelEncoder to the category's index, then Equal against 0..K-1), the missing-value
           indicators, the imputer's fill values, then scaling, all in float64 as nntrain does,
           cast to float32 for the network.
  tensors  images and arrays: one input "x" (N, *sample shape), float32, as nntrain reads them
           (pixels after resizing, before scaling); token ids as int64.
  text     "tokens" (N, T) int64 token ids: the tokenizer stays outside (the sidecar records it
           and the vocabulary).
  Sequences (when a layer uses the sequences' lengths) take "lengths" (N,) int64 too, 1..T.
  Output "probabilities" (softmax / sigmoid, float32), "scores" (float32, losses without
  probabilities) or "values" (regression, float64, in the target's units). A row `predict`
  cannot score (a missing value the run does not impute, an unknown category under
  data.unknown: error) gets NaN outputs.

safetensors: the parameters under the keys of the equivalent torch.nn.Sequential
(engine.graph.torch_source, also in the file's metadata and the sidecar): layer i's as "i.NAME".

The sidecar (`<out>.json`) has the inputs and outputs (names, dtypes, shapes), classes, task,
the preprocessing with its fitted statistics, the nntrain version, checkpoint and epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .. import __version__
from ..engine.graph import ExportError, Graph, network_to_graph, torch_source, torch_state_dict
from ..errors import NntrainError
from ..fileio import atomic_write
from ..train.rundir import refuse_inside_run

FORMATS = ("onnx", "safetensors")
CHECKPOINTS = ("best", "last")
INSTALL = "pip install 'nntrain[export]'"
ML = "ai.onnx.ml"


def export_run(run_dir: Path, fmt: str, which: str = "best", out: Path | None = None) -> dict:
    """Write the model of run `run_dir` (checkpoint `which`) as `fmt` to `out` and its sidecar to `<out>.json`.

    `out` defaults to `<run name>.<fmt>` in the current directory. Returns {"format", "path",
    "sidecar", "checkpoint", "epoch", "inputs": [names], "outputs": [names]} (safetensors: and
    "keys"). NntrainError for an unknown format or checkpoint, a missing package, a path that
    is not a run directory, an `out` that is a folder or inside the run, a layer that cannot be
    exported; WriteError when a file cannot be written.
    """
    if fmt not in FORMATS:
        raise NntrainError(f"unknown export format '{fmt}'; allowed: {', '.join(FORMATS)}", "--format")
    if which not in CHECKPOINTS:
        raise NntrainError(f"unknown checkpoint '{which}'; allowed: {', '.join(CHECKPOINTS)}", "--checkpoint")
    _require(fmt)
    from ..api import load_run  # api imports this module

    run_dir = Path(run_dir)
    exp = load_run(run_dir, which, with_data=False)
    out = Path(out) if out is not None else Path(f"{Path(os.path.abspath(run_dir)).name}.{fmt}")
    _check_out(out, run_dir, fmt)
    sidecar = out.with_name(out.name + ".json")
    info = _describe(exp, run_dir)
    try:
        if fmt == "onnx":
            data, inputs, outputs = _onnx_bytes(exp, info)
        else:
            data, inputs, outputs, keys = _safetensors_bytes(exp, info)
    except ExportError as e:
        raise NntrainError(f"cannot export {run_dir} to {fmt}: {e}") from None
    info.update(format=fmt, file=out.name, inputs=inputs, outputs=outputs)
    atomic_write(out, data, f"exporting {run_dir} to {fmt}")
    atomic_write(sidecar, (json.dumps(info, indent=2) + "\n").encode(), f"writing the sidecar of {out}")
    result = {
        "format": fmt, "path": str(out), "sidecar": str(sidecar), "checkpoint": exp.source, "epoch": info["epoch"],
        "inputs": [i["name"] for i in inputs], "outputs": [o["name"] for o in outputs],
    }
    if fmt == "safetensors":
        result["keys"] = keys
    return result


def _require(fmt: str) -> None:
    """NntrainError naming the extra to install when the format's package is missing."""
    modules = ("onnx",) if fmt == "onnx" else ("safetensors",)
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            raise NntrainError(f"exporting to {fmt} needs the {module} package: {INSTALL}") from None


def _check_out(out: Path, run_dir: Path, fmt: str) -> None:
    if os.path.isdir(out):
        raise NntrainError(f"'{out}' is a folder; give a file name, e.g. {out / ('model.' + fmt)}", "--out")
    refuse_inside_run(out, [run_dir], "--out")


# --- what the run is -------------------------------------------------------------------------


def _kind(exp) -> str:
    """"text" (token ids from a tokenizer), "table" (raw feature columns) or "tensor" (images, arrays, sequences)."""
    if exp.dataset.vocabulary is not None:
        return "text"
    if len(exp.dataset.sample_shape) == 1 and not exp.network.layers[0].integer_input:
        return "table"
    return "tensor"


def _takes_lengths(exp) -> bool:
    return _kind(exp) != "table" and any(layer.uses_lengths for layer in exp.network.chain)


def _floats(a) -> list:
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def _describe(exp, run_dir: Path) -> dict:
    """The sidecar's fields that do not depend on the format."""
    saved = exp.saved or {}
    dataset, encoder = exp.dataset, exp.dataset.encoder
    kind = _kind(exp)
    pre: dict = {"kind": kind}
    if kind == "table":
        pre["columns"] = [
            {"name": c, "kind": "category" if c in encoder.categories else "number",
             **({"categories": encoder.categories[c]} if c in encoder.categories else {}),
             "indicator": c in encoder.indicators}
            for c in encoder.columns
        ]
        pre["encoded_features"] = encoder.names
        pre["unknown_categories"] = "all zeros" if encoder.unknown == "ignore" else "NaN outputs (predict refuses the row)"
    else:
        pre["sample_shape"] = list(_tensor_shape(exp)) if kind == "tensor" else list(dataset.sample_shape)
    if kind == "text":
        vocabulary = dataset.vocabulary
        tokenizer = vocabulary.tokenizer
        pre["tokenizer"] = {
            "tokens": tokenizer.tokens if tokenizer else None, "lower": tokenizer.lower if tokenizer else None,
            "max_length": vocabulary.max_length, "padding_id": 0, "unknown_id": 1,
            "note": "the tokenizer runs outside the model: it takes token ids; see nntrain.data.text.Tokenizer",
        }
        pre["vocabulary"] = vocabulary.tokens
    pre["impute"] = None if exp.imputer.fill is None else _floats(exp.imputer.fill)
    scaler = exp.scaler
    pre["scale"] = {"method": scaler.method, "formula": "(x - offset) / factor, per encoded input, in float64"}
    if scaler.offset is not None:
        pre["scale"].update(offset=_floats(scaler.offset), factor=_floats(scaler.factor))
    target = exp.target_scaler
    if target.offset is not None:
        pre["target_scale"] = {"formula": "value = output * factor + offset", "offset": _floats(target.offset),
                               "factor": _floats(target.factor)}
    pre["network_input_shape"] = list(exp.network.in_shape)
    return {
        "nntrain_version": __version__,
        "run": str(run_dir),
        "checkpoint": exp.source,
        "epoch": int(saved["meta.epoch"]) if "meta.epoch" in saved else None,
        "task": dataset.task,
        "classes": dataset.classes,
        "preprocessing": pre,
    }


# --- ONNX ------------------------------------------------------------------------------------


def _value(name: str, dtype, shape, **more) -> dict:
    kind = "string" if np.dtype(dtype).kind in "US" else np.dtype(dtype).name
    return {"name": name, "dtype": kind, "shape": ["N" if n is None else int(n) for n in shape], **more}


def _onnx_bytes(exp, info: dict):
    from .onnx_model import to_model

    graph = Graph(np.float32)
    network = exp.network
    refused: list[str] = []  # (N, 1) bool values: rows predict cannot score, whose outputs become NaN
    kind = _kind(exp)
    if kind == "table":
        x, inputs = _table_inputs(graph, exp, refused)
        lengths = None
    elif kind == "text":
        x = graph.input("tokens", np.int64, (None, *exp.dataset.sample_shape))
        inputs = [_value(x, np.int64, (None, *exp.dataset.sample_shape), what="token ids, 0 = padding")]
        lengths = _lengths_input(graph, exp, inputs)
    else:
        x, inputs, lengths = _tensor_input(graph, exp, refused)
    y = network_to_graph(network, graph, x, lengths)
    classes = exp.dataset.classes
    shape = (None, *network.out_shape)
    if classes is not None:
        name, dtype = ("probabilities" if network.loss.probabilities else "scores"), np.float32
    else:
        name, dtype = "values", np.float64
        y = graph.node("Cast", [y], to=np.dtype(np.float64))
        target = exp.target_scaler
        if target.offset is not None:
            y = graph.node("Mul", [y, graph.constant(target.factor, "target_factor", np.float64)])
            y = graph.node("Add", [y, graph.constant(target.offset, "target_offset", np.float64)])
    if refused:
        bad = refused[0]
        for other in refused[1:]:
            bad = graph.node("Or", [bad, other])
        if len(shape) > 2:
            bad = graph.node("Unsqueeze", [bad, graph.ints(list(range(2, len(shape))), "axes")])
        y = graph.node("Where", [bad, graph.constant(np.array(np.nan), "nan", dtype), y])
    graph.output(name, y, dtype, shape)
    outputs = [_value(name, dtype, shape, columns=_output_columns(exp, network.out_shape[-1]))]
    metadata = {"nntrain_version": __version__, "classes": json.dumps(classes), "checkpoint": str(exp.source)}
    model = to_model(graph, exp.config.name or "nntrain", f"nntrain {__version__}: {info['run']} ({exp.source} checkpoint)", metadata)
    return model.SerializeToString(), inputs, outputs


def _output_columns(exp, width: int) -> list[str]:
    """What each output column is, as `predict`'s CSV header names it."""
    classes = exp.dataset.classes
    if classes is None:
        return ["prediction"] if width == 1 else [f"prediction_{j}" for j in range(width)]
    prefix = "p" if exp.network.loss.probabilities else "score"
    if width == len(classes):
        return [f"{prefix}_{c}" for c in classes]
    return [f"p_{classes[1]}" if exp.network.loss.probabilities else "score"]


def _table_inputs(graph: Graph, exp, refused: list[str]):
    """One input per raw feature column -> the encoded (N, F) float64 features, imputed and scaled, as float32."""
    from ..data.table import NULL_VALUES

    encoder = exp.dataset.encoder
    parts, inputs = [], []
    nan = graph.constant(np.array(np.nan), "nan", np.float64)
    for name, cols, is_category in encoder.blocks():
        if is_category:
            categories = encoder.categories[name]
            cell = graph.input(name, np.str_, (None, 1))
            inputs.append(_value(name, np.str_, (None, 1), categories=categories))
            markers = [m for m in NULL_VALUES if m not in categories]
            # Each category -> its index, a missing-value marker -> -2, anything else (unknown) -> -1.
            code = graph.node(
                "LabelEncoder", [cell], domain=ML, keys_strings=[*categories, *markers],
                values_int64s=[*range(len(categories)), *[-2] * len(markers)], default_int64=-1,
            )
            onehot = graph.node("Equal", [code, graph.ints(np.arange(len(categories)), "categories")])
            missing = graph.node("Equal", [code, graph.ints(-2, "missing")])
            block = graph.node("Where", [missing, nan, graph.node("Cast", [onehot], to=np.dtype(np.float64))])
            if encoder.unknown == "error":
                refused.append(graph.node("Equal", [code, graph.ints(-1, "unknown")]))
        else:
            block = graph.input(name, np.float64, (None, 1))
            inputs.append(_value(name, np.float64, (None, 1)))
            missing = graph.node("IsNaN", [block])
        parts.append(block)
        if name in encoder.indicators:
            parts.append(graph.node("Cast", [missing], to=np.dtype(np.float64)))
    X = graph.node("Concat", parts, axis=1) if len(parts) > 1 else parts[0]
    return _encoded(graph, exp, X, (len(encoder.names),), refused), inputs


def _lengths_input(graph: Graph, exp, inputs: list[dict]) -> str | None:
    """The input "lengths" (N,) when a layer reads the sequences' real lengths, else None."""
    if not _takes_lengths(exp):
        return None
    lengths = graph.input("lengths", np.int64, (None,))
    inputs.append(_value(lengths, np.int64, (None,), what="real length of each sequence, 1..T (T: whole)"))
    return lengths


def _tensor_input(graph: Graph, exp, refused: list[str]):
    """One input "x" (N, *sample shape): float32 values, or int64 ids for a network that starts with token ids;
    and "lengths" for sequences. (network input, inputs' descriptions, lengths or None).

    The steps after each sequence's length are set to 0 first, as an .npz for predict holds them: then whatever
    they hold (NaN included) changes nothing, and a row is refused only for a gap in its real steps.
    """
    shape = _tensor_shape(exp)
    ids = exp.network.layers[0].integer_input
    x = graph.input("x", np.int64 if ids else np.float32, (None, *shape))
    inputs = [_value(x, np.int64, (None, *shape), what="token ids") if ids else _value(x, np.float32, (None, *shape))]
    lengths = _lengths_input(graph, exp, inputs)
    if ids:
        return graph.reshape(x, (0, *exp.network.in_shape)), inputs, lengths
    X = graph.node("Cast", [x], to=np.dtype(np.float64))
    if lengths is not None:
        valid = graph.valid(lengths, shape[0])  # (N, T, 1); a sequence is (T, C)
        X = graph.node("Where", [valid, X, graph.constant(np.array(0.0), "zero", np.float64)])
    return _encoded(graph, exp, X, shape, refused), inputs, lengths


def _tensor_shape(exp) -> tuple:
    """A sample's shape at the input: the network's when it takes samples with axes (a stack of 2-D arrays read as
    one-channel images (1, T, D) but taken as sequences (T, D)), else the data's (images into an MLP: (C, H, W))."""
    in_shape = tuple(exp.network.in_shape)
    return in_shape if len(in_shape) > 1 else tuple(exp.dataset.sample_shape)


def _encoded(graph: Graph, exp, X: str, shape: tuple, refused: list[str]) -> str:
    """Features X (N, *shape) float64 -> imputed, scaled (float64, as Scaler.transform), float32 (N, *in_shape).

    Without imputation a row with a missing (NaN) value is refused, as predict does.
    """
    fill = exp.imputer.fill
    if fill is not None:
        X = graph.node("Where", [graph.node("IsNaN", [X]), graph.constant(fill.reshape(shape), "fill", np.float64), X])
    else:
        total = graph.node("ReduceSum", [graph.node("Flatten", [X], axis=1), graph.ints([1], "axes")], keepdims=1)
        refused.append(graph.node("IsNaN", [total]))
    scaler = exp.scaler
    if scaler.offset is not None:
        X = graph.node("Sub", [X, graph.constant(np.reshape(scaler.offset, shape), "offset", np.float64)])
        X = graph.node("Div", [X, graph.constant(np.reshape(scaler.factor, shape), "factor", np.float64)])
    X = graph.node("Cast", [X], to=graph.dtype)
    in_shape = tuple(exp.network.in_shape)
    return X if in_shape == shape else graph.reshape(X, (0, *in_shape))


# --- safetensors -----------------------------------------------------------------------------


def _safetensors_bytes(exp, info: dict):
    from safetensors.numpy import save

    network = exp.network
    tensors = torch_state_dict(network)
    source = torch_source(network)
    info["torch_module"] = source
    metadata = {
        "format": "pt", "nntrain_version": __version__, "torch_module": source, "classes": json.dumps(exp.dataset.classes),
        "checkpoint": str(exp.source),
    }
    dtype = "int64" if network.layers[0].integer_input else network.dtype.name
    inputs = [_value("x", dtype, (None, *network.in_shape), what="the network's input: encoded, imputed and scaled "
                     "as preprocessing says")]
    width = network.out_shape[-1]
    outputs = [_value("output", network.dtype, (None, *network.out_shape), columns=_output_columns(exp, width))]
    keys = {key: list(value.shape) for key, value in tensors.items()}
    info["keys"] = keys
    return save(tensors, metadata), inputs, outputs, list(keys)

"""Inside the network: first-layer weights, convolution filters, feature maps, diagnostics over epochs, and a 2-D
projection of a layer's activations or of an embedding matrix.

Layers are found by what they declare and hold (see runs.py), never by name. Layer indices are
those of model.layers, as in checkpoints (layers.<i>.weight) and diagnostics.csv.
"""

from __future__ import annotations

import math

import numpy as np

from . import figure
from .runs import (
    Run,
    checkpoint_epoch,
    checkpoint_text,
    choose_split,
    embedding_layer,
    filter_layers,
    first_weights,
    hidden_layer,
    layer_output,
    map_layers,
    spread,
    split_layer_outputs,
)
from ...errors import NntrainError

MAX_UNITS = 64  # weights: units drawn as images (the data holds all)
MAX_FILTERS, MAX_CHANNELS = 32, 16  # filters: the mosaic of filters x input channels
MAX_MAPS = 64  # features: channels drawn
MAX_PROJECTED = 1000  # projection: rows of the split (spread evenly)
MAX_TOKENS_NAMED = 40  # projection of an embedding: tokens written beside their points


def _symmetric(tile: np.ndarray) -> np.ndarray:
    """A tile scaled by its largest magnitude to [-1, 1] (all zeros stays zeros)."""
    top = np.nanmax(np.abs(tile)) if tile.size else 0.0
    return tile / top if top > 0 else tile


def _unit(tile: np.ndarray) -> np.ndarray:
    """A tile scaled to [0, 1] by its own minimum and maximum (an RGB filter's colours)."""
    low, high = np.nanmin(tile), np.nanmax(tile)
    return (tile - low) / (high - low) if high > low else np.zeros_like(tile)


def _layer_text(exp, i: int) -> str:
    return f"layer {i} ({exp.network.layers[i].name})"


# ---------------------------------------------------------------- first-layer weights


def render_weights(run: Run, fmt: str, which: str = "best") -> figure.Figure:
    """The first layer's weight matrix W (in, out). For image data each unit's column of weights is drawn as an
    image of the input's shape (up to 64 units; red positive, blue negative, each scaled by its largest weight):
    what the unit responds to. For other data, the matrix as a heatmap: inputs down, units across."""
    exp = run.exp(which, data=False)
    i = first_weights(exp.network)
    if i is None:  # kinds_for says so first; a checkpoint path of another shape could still get here
        raise NntrainError("the network's first layer with weights is not a weight matrix over the inputs")
    w = np.asarray(exp.network.layers[i].params["weight"], dtype=np.float64)
    shape = tuple(exp.dataset.sample_shape)
    image = len(shape) == 3 and shape[0] in (1, 3) and math.prod(shape) == w.shape[0]
    data = {"layer": i, "checkpoint": exp.source, "epoch": checkpoint_epoch(exp), "weight": w.tolist(),
            "sample_shape": list(shape), "as_images": bool(image)}  # fmt: skip
    title = f"First-layer weights: {run.name}, {_layer_text(exp, i)}, {w.shape[0]} inputs x {w.shape[1]} units, {checkpoint_text(exp)}"
    with figure.drawing():
        fig = figure.new_figure()
        ax = fig.subplots()
        ax.grid(False)
        if image:
            units = min(w.shape[1], MAX_UNITS)
            c, h, wd = shape
            tiles = np.stack([_symmetric(w[:, u].reshape(c, h, wd).mean(axis=0) if c == 3 else w[:, u].reshape(h, wd)) for u in range(units)])
            rows, columns = figure.tile_grid(units, aspect=figure.SIZE[0] / figure.SIZE[1])
            mosaic = figure.tiles(tiles, rows, columns)
            shown = ax.imshow(np.ma.masked_invalid(mosaic), cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"units 0..{units - 1}, row by row" + (f" (of {w.shape[1]})" if units < w.shape[1] else "")
                          + (" — mean over the 3 colour channels" if c == 3 else ""))  # fmt: skip
            fig.colorbar(shown, ax=ax, label="weight / the unit's largest |weight|")
        else:
            top = float(np.nanmax(np.abs(w))) or 1.0
            shown = ax.imshow(w, cmap="RdBu_r", vmin=-top, vmax=top, aspect="auto")
            names = list(exp.dataset.feature_names)
            if len(names) == w.shape[0] and len(names) <= 40:
                ax.set_yticks(np.arange(len(names)), names, fontsize=7 if len(names) > 15 else 9)
            ax.set_ylabel("input")
            ax.set_xlabel("unit")
            fig.colorbar(shown, ax=ax, label="weight")
        ax.set_title(title)
        return figure.finish("weights", fig, fmt, data)


# ---------------------------------------------------------------- convolution filters


def _pick(layer, allowed: list[int], what: str) -> int:
    if not allowed:
        raise NntrainError(f"the network has no {what}")
    if layer is None:
        return allowed[0]
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or int(layer) not in allowed:
        raise NntrainError(f"layer {layer!r} has no {what}; layers that have: {', '.join(map(str, allowed))}")
    return int(layer)


def render_filters(run: Run, fmt: str, which: str = "best", layer: int | None = None) -> figure.Figure:
    """The kernels of a convolution layer (default: the first), weight (out, in, kh, kw). With 1 or 3 input
    channels, one image per filter (3 channels: in colour, each filter scaled to [0, 1]); with more, a mosaic
    of filters (columns, up to 32) by input channels (rows, up to 16), each filter scaled by its largest weight."""
    exp = run.exp(which, data=False)
    i = _pick(layer, filter_layers(exp.network), "convolution filters (a 4-d weight)")
    w = np.asarray(exp.network.layers[i].params["weight"], dtype=np.float64)
    f, c, kh, kw = w.shape
    data = {"layer": i, "checkpoint": exp.source, "epoch": checkpoint_epoch(exp), "weight": w.tolist()}
    with figure.drawing():
        fig = figure.new_figure()
        ax = fig.subplots()
        ax.grid(False)
        ax.set_xticks([])
        ax.set_yticks([])
        if c == 3:
            shown = min(f, MAX_UNITS)
            rows, columns = figure.tile_grid(shown, aspect=figure.SIZE[0] / figure.SIZE[1])
            rgb = np.stack([_unit(w[k].transpose(1, 2, 0)) for k in range(shown)])
            ax.imshow(figure.tiles(rgb, rows, columns, fill=1.0))
            ax.set_xlabel(f"filters 0..{shown - 1}, row by row, in colour")
            data["shown"] = [shown, 3]
        elif c == 1:
            shown = min(f, MAX_UNITS)
            rows, columns = figure.tile_grid(shown, aspect=figure.SIZE[0] / figure.SIZE[1])
            mosaic = figure.tiles(np.stack([_symmetric(w[k, 0]) for k in range(shown)]), rows, columns)
            image = ax.imshow(np.ma.masked_invalid(mosaic), cmap="RdBu_r", vmin=-1, vmax=1)
            fig.colorbar(image, ax=ax, label="weight / the filter's largest |weight|")
            ax.set_xlabel(f"filters 0..{shown - 1}, row by row")
            data["shown"] = [shown, 1]
        else:
            fs, cs = min(f, MAX_FILTERS), min(c, MAX_CHANNELS)
            scaled = np.stack([_symmetric(w[k, :cs]) for k in range(fs)])  # (fs, cs, kh, kw), shared per filter
            # Filters across, input channels down: the wider side of the mosaic on the wider side of the figure.
            mosaic = figure.tiles(scaled.transpose(1, 0, 2, 3).reshape(cs * fs, kh, kw), cs, fs)
            image = ax.imshow(np.ma.masked_invalid(mosaic), cmap="RdBu_r", vmin=-1, vmax=1)
            fig.colorbar(image, ax=ax, label="weight / the filter's largest |weight|")
            ax.set_xlabel(f"filters 0..{fs - 1}" + (f" (of {f})" if fs < f else ""))
            ax.set_ylabel(f"input channels 0..{cs - 1}" + (f" (of {c})" if cs < c else ""))
            data["shown"] = [fs, cs]
        ax.set_title(f"Convolution filters: {run.name}, {_layer_text(exp, i)}, {f} filters of {c}x{kh}x{kw}, {checkpoint_text(exp)}")
        return figure.finish("filters", fig, fmt, data)


# ---------------------------------------------------------------- feature maps


def render_features(run: Run, fmt: str, which: str = "best", split: str | None = None, sample: int = 0,
                    layer: int | None = None) -> figure.Figure:  # fmt: skip
    """One input (row `sample` of the split; default split test) and the maps a layer makes of it (default: the
    first convolution's output), each map scaled to its own range (up to 64 channels)."""
    exp = run.exp(which)
    network = exp.network
    filters = filter_layers(network)
    maps = map_layers(network)
    default = filters[0] if filters and filters[0] in maps else (maps[0] if maps else None)
    i = _pick(default if layer is None else layer, maps, "output of maps (channels, height, width)")
    split = choose_split(exp, split)
    n = len(exp.splits[split])
    if not isinstance(sample, (int, np.integer)) or isinstance(sample, bool) or not 0 <= sample < n:
        raise NntrainError(f"sample must be a row of the {split} split, 0 .. {n - 1}; got {sample!r}")
    positions = np.array([int(sample)])
    X, y, _ = exp.rows(split, positions)
    out = layer_output(exp, X, i, exp.lengths_of(split, positions))[0]
    seen = network.as_samples(np.asarray(X, dtype=np.float64))[0]
    classes = exp.dataset.classes
    label = classes[int(np.asarray(y).reshape(-1)[0])] if classes is not None and np.asarray(y).ndim == 1 else None
    data = {"layer": i, "checkpoint": exp.source, "epoch": checkpoint_epoch(exp), "split": split, "sample": int(sample),
            "row": int(exp.splits[split][sample]), "label": label, "input": seen.tolist(), "maps": out.tolist()}  # fmt: skip
    with figure.drawing():
        fig = figure.new_figure()
        left, right = fig.subplots(1, 2, width_ratios=[1, 2.2])
        for ax in (left, right):
            ax.grid(False)
            ax.set_xticks([])
            ax.set_yticks([])
        picture = seen if seen.ndim == 2 else (seen[0] if seen.shape[0] != 3 else _unit(seen.transpose(1, 2, 0)))
        left.imshow(picture, cmap="gray")
        left.set_title(f"input ({split} sample {sample}" + (f", class {label})" if label is not None else ")"))
        shown = min(out.shape[0], MAX_MAPS)
        rows, columns = figure.tile_grid(shown, aspect=1.6)
        mosaic = figure.tiles(np.stack([_unit(out[k]) for k in range(shown)]), rows, columns)
        right.imshow(np.ma.masked_invalid(mosaic), cmap="viridis", vmin=0, vmax=1)
        right.set_title(f"{shown} of {out.shape[0]} maps ({out.shape[1]}x{out.shape[2]}), each scaled to its range")
        fig.suptitle(f"Feature maps: {run.name}, output of {_layer_text(exp, i)}, {checkpoint_text(exp)}")
        return figure.finish("features", fig, fmt, data)


# ---------------------------------------------------------------- diagnostics over epochs

DIAGNOSTIC_PANELS = (
    ("grad_norm", "gradient norm (mean per step)", True),
    ("update_ratio", "update / weight norm per step", True),
    ("dead_fraction", "dead (relu) / saturated fraction", False),
    ("activation_std", "activation std (probe batch)", False),
)


def diagnostics_data(run: Run) -> dict:
    """diagnostics.csv by layer: {"epochs": [...], "layers": [{"layer", "type", column: [value per epoch]}]}."""
    from ...train.diagnostics import FLOAT_COLUMNS, read_diagnostics

    rows = read_diagnostics(run.path)
    epochs = sorted({r["epoch"] for r in rows})
    at = {e: k for k, e in enumerate(epochs)}
    layers = {}
    for r in rows:
        entry = layers.setdefault(r["layer"], {"layer": r["layer"], "type": r["type"], **{c: [None] * len(epochs) for c in FLOAT_COLUMNS}})
        for c in FLOAT_COLUMNS:
            entry[c][at[r["epoch"]]] = r[c]
    return {"epochs": epochs, "layers": [layers[i] for i in sorted(layers)]}


def render_diagnostics(run: Run, fmt: str) -> figure.Figure:
    """train.diagnostics over the epochs, one line per layer: the gradient norm and the update-to-weight ratio of
    each layer with weights (log scales; the dotted line is the healthy ~1e-3), the fractions of dead and of
    saturated units of each activation that can die or saturate, and every layer's activation spread."""
    data = diagnostics_data(run)
    epochs = data["epochs"]
    with figure.drawing():
        fig = figure.new_figure()
        axes = fig.subplots(2, 2, sharex=True).reshape(-1)
        for ax, (column, title, log) in zip(axes, DIAGNOSTIC_PANELS):
            drawn = 0
            for k, entry in enumerate(data["layers"]):
                for name, style in ((column, "-"), ("saturated_fraction", "--")) if column == "dead_fraction" else ((column, "-"),):
                    values = np.array([np.nan if v is None else v for v in entry[name]], dtype=np.float64)
                    if not np.isfinite(values).any():
                        continue
                    what = "" if column != "dead_fraction" else (" dead" if name == column else " saturated")
                    ax.plot(epochs, values, style, color=f"C{k % 10}", label=f"{entry['layer']} {entry['type']}{what}",
                            marker="." if len(epochs) < 30 else None)  # fmt: skip
                    drawn += 1
            figure.integer_ticks(ax)
            if column == "update_ratio" and drawn:
                ax.axhline(1e-3, color="grey", linestyle=":", linewidth=1)
            positive = [v for e in data["layers"] for v in e[column] if v is not None and v > 0 and math.isfinite(v)]
            if log and positive:
                ax.set_yscale("log")
            if column == "dead_fraction":
                ax.set_ylim(-0.03, 1.03)
            ax.set_title(title)
            ax.set_ylabel(column if column != "dead_fraction" else "fraction of units")
            if drawn:
                ax.legend(fontsize=6, loc="best")
            else:
                ax.text(0.5, 0.5, "no layer of this kind", ha="center", va="center", transform=ax.transAxes, color="grey")
        for ax in axes[2:]:
            ax.set_xlabel("epoch")
        fig.suptitle(f"Training diagnostics: {run.name}, epochs {epochs[0]}..{epochs[-1]} (diagnostics.csv)")
        return figure.finish("diagnostics", fig, fmt, data)


# ---------------------------------------------------------------- projection

METHODS = ("pca", "tsne")


def pca(X: np.ndarray, components: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points (n, components), axes (components, d), explained variance ratio) of the rows of X, centred.

    The axes are the leading right singular vectors of the centred X, each signed so that its
    largest-magnitude entry is positive (an SVD's signs are otherwise arbitrary). A matrix of
    fewer than `components` columns gets zero coordinates for the missing axes.
    """
    X = np.asarray(X, dtype=np.float64)
    centred = X - X.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    axes = np.zeros((components, X.shape[1]))
    k = min(components, vt.shape[0])
    axes[:k] = vt[:k]
    for j in range(k):
        if axes[j, np.argmax(np.abs(axes[j]))] < 0:
            axes[j] = -axes[j]
    total = float(np.sum(s**2))
    explained = np.zeros(components)
    explained[:k] = s[:k] ** 2 / total if total > 0 else 0.0
    return centred @ axes.T, axes, explained


def tsne(X: np.ndarray) -> np.ndarray:
    """A 2-D t-SNE embedding of the rows of X (scikit-learn, seeded with 0, initialised by PCA)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise NntrainError("method tsne needs scikit-learn, which is not installed: pip install scikit-learn (or use method pca)") from None
    n = len(X)
    if n < 5:
        raise NntrainError(f"t-SNE needs at least 5 rows; there are {n}")
    model = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=0)
    return np.asarray(model.fit_transform(np.asarray(X, dtype=np.float64)), dtype=np.float64)


def render_projection(run: Run, fmt: str, which: str = "best", split: str | None = None, layer: int | None = None,
                      method: str = "pca", max_points: int = MAX_PROJECTED) -> figure.Figure:  # fmt: skip
    """A 2-D map of what a layer makes of the inputs: the outputs of `layer` (default: the input of the last
    layer with weights) for up to 1000 rows of the split, projected by PCA or t-SNE and coloured by class
    (regression: by value). For a first layer that takes token ids (default there), its embedding matrix
    instead: one point per token of the vocabulary, the most frequent named."""
    if method not in METHODS:
        raise NntrainError(f"unknown projection method '{method}'; allowed: {', '.join(METHODS)}")
    if not isinstance(max_points, (int, np.integer)) or isinstance(max_points, bool) or max_points < 2:
        raise NntrainError(f"max_points must be a whole number of at least 2, got {max_points!r}")
    bare = run.exp(which, data=False)
    network = bare.network
    table = embedding_layer(network)
    hidden = hidden_layer(network)
    if layer is None:
        layer = table if table is not None else hidden
    if layer is None:
        raise NntrainError("the network has no hidden layer or embedding to project")
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or not 0 <= layer < len(network.layers):
        raise NntrainError(f"layer must be an index of model.layers, 0 .. {len(network.layers) - 1}; got {layer!r}")
    layer = int(layer)
    data = {"layer": layer, "method": method, "checkpoint": bare.source, "epoch": checkpoint_epoch(bare)}
    if layer == table:
        vectors = np.asarray(network.layers[layer].params["weight"], dtype=np.float64)
        tokens = list(bare.dataset.vocabulary.tokens) if bare.dataset.vocabulary is not None else [str(k) for k in range(len(vectors))]
        data.update(of="token_vectors", tokens=tokens, labels=None)
        exp, split = bare, None
        what = f"embedding matrix of {_layer_text(bare, layer)}: {vectors.shape[0]} tokens x {vectors.shape[1]}"
    else:
        exp = run.exp(which)
        split = choose_split(exp, split)
        positions = spread(len(exp.splits[split]), int(max_points))
        y, vectors = split_layer_outputs(exp, split, positions, layer)
        classes = exp.dataset.classes
        per_row = classes is not None and y.ndim == 1
        labels = y.astype(np.int64) if per_row else np.asarray(y, dtype=np.float64).reshape(len(y), -1)[:, 0]
        data.update(of="activations", split=split, rows=positions.tolist(), labels=labels.tolist(),
                    classes=list(classes) if per_row else None)  # fmt: skip
        what = f"output of {_layer_text(exp, layer)} ({vectors.shape[1]} values) for {len(y)} {split} rows"
    if method == "pca":
        points, _, explained = pca(vectors)
        data["explained"] = explained.tolist()
    else:
        points = tsne(vectors)
    data["points"] = points.tolist()
    with figure.drawing():
        fig = figure.new_figure()
        ax = fig.subplots()
        if data["of"] == "token_vectors":
            ax.scatter(points[:, 0], points[:, 1], s=10, alpha=0.7)
            named = [k for k, t in enumerate(data["tokens"]) if not (t.startswith("<") and t.endswith(">"))][:MAX_TOKENS_NAMED]
            for k in named:
                ax.annotate(data["tokens"][k], (points[k, 0], points[k, 1]), fontsize=7, xytext=(2, 2), textcoords="offset points")
        elif data["classes"] is not None:
            colors = figure.class_colors(len(data["classes"]))
            labels = np.asarray(data["labels"])
            for k, name in enumerate(data["classes"]):
                chosen = labels == k
                if chosen.any():
                    ax.scatter(points[chosen, 0], points[chosen, 1], s=10, color=colors[k], alpha=0.75, label=f"class {name}")
            ax.legend(fontsize=7, loc="best", markerscale=1.5)
        else:
            shown = ax.scatter(points[:, 0], points[:, 1], s=10, c=data["labels"], cmap="viridis", alpha=0.8)
            fig.colorbar(shown, ax=ax, label="target value")
        if method == "pca":
            ax.set_xlabel(f"principal component 1 ({data['explained'][0]:.1%} of the variance)")
            ax.set_ylabel(f"principal component 2 ({data['explained'][1]:.1%} of the variance)")
        else:
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
        ax.set_title(f"{'PCA' if method == 'pca' else 't-SNE'} projection: {run.name}, {what}, {checkpoint_text(exp)}")
        return figure.finish("projection", fig, fmt, data)

"""bench-model --model digits: an MLP on scikit-learn's 8×8 digits.

Trained in NumPy (no framework needed), pruned per layer by magnitude, then
fine-tuned with the mask held fixed, so the pruned model keeps its accuracy.
The same weights then run on every system available: NumPy and PyTorch
dense (the "before"), and sparsekit's formats (the "after").
"""
import importlib

import numpy as np

from sparsekit.bench.model import UsageError, Variant, file_size

BATCHES = [1, 256]


def load_digits_split(rng):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError("--model digits needs scikit-learn "
                         "(pip install scikit-learn)") from None
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def init_mlp(sizes, rng):
    return [((rng.standard_normal((o, i)) * np.sqrt(2.0 / i)).astype(np.float32),
             np.zeros(o, np.float32)) for i, o in zip(sizes[:-1], sizes[1:])]


def forward_numpy(params, x):
    for i, (w, b) in enumerate(params):
        x = x @ w.T + b
        if i < len(params) - 1:
            x = np.maximum(x, 0)
    return x


def train(params, x, y, epochs, rng, masks=None, lr=1e-3, batch=64):
    """Adam on softmax cross-entropy; masks (if given) keep pruned weights at 0."""
    state = [[np.zeros_like(a) for a in (w, w, b, b)] for w, b in params]  # m, v per param
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for s in range(0, len(y), batch):
            idx = order[s:s + batch]
            acts = [x[idx]]
            for i, (w, b) in enumerate(params):
                z = acts[-1] @ w.T + b
                acts.append(np.maximum(z, 0) if i < len(params) - 1 else z)
            p = np.exp(acts[-1] - acts[-1].max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1.0
            grad = p / len(idx)
            step += 1
            for i in reversed(range(len(params))):
                w, b = params[i]
                gw, gb = grad.T @ acts[i], grad.sum(axis=0)
                if i:
                    grad = (grad @ w) * (acts[i] > 0)
                for j, (param, g) in enumerate(((w, gw), (b, gb))):
                    m, v = state[i][2 * j], state[i][2 * j + 1]
                    m[...] = 0.9 * m + 0.1 * g
                    v[...] = 0.999 * v + 0.001 * g * g
                    param -= lr * (m / (1 - 0.9 ** step)) / (
                        np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
                if masks is not None:
                    w *= masks[i]
    return params


def prune_by_magnitude(params, sparsity):
    """Zero the smallest-|w| fraction of each layer; returns the keep masks."""
    masks = []
    for w, _ in params:
        k = int(round(sparsity * w.size))
        mask = np.ones(w.size, dtype=np.float32)
        if k:
            mask[np.argsort(np.abs(w), axis=None, kind="stable")[:k]] = 0.0
        mask = mask.reshape(w.shape)
        w *= mask
        masks.append(mask)
    return masks


def accuracy(predict, x, y):
    return float((np.argmax(np.asarray(predict(x)), axis=1) == y).mean())


def _save_npz(arrays):
    return lambda path: np.savez(path, **arrays)


def _dense_arrays(params):
    return {f"{n}{i}": a for i, (w, b) in enumerate(params) for n, a in (("w", w), ("b", b))}


def _sparsekit_chain(packed):
    import sparsekit

    def predict(x):
        for i, (w, b) in enumerate(packed):
            x = sparsekit.linear(x, w, b, activation="relu" if i < len(packed) - 1 else None)
        return x
    return predict


def _sparsekit_variants(pruned, sparsity, notes):
    """sparsekit formats for the pruned weights, each where this build has it
    (one that raises is left out with a note: the rest still run)."""
    import sparsekit

    out = []
    kinds = [("sparsekit CSR", "CSRMatrix", lambda w: sparsekit.CSRMatrix.from_dense(w), "fp32"),
             ("sparsekit sparse int8", "SparseInt8Matrix",
              lambda w: sparsekit.SparseInt8Matrix.from_float(w), "int8"),
             ("sparsekit.pack", "pack", lambda w: sparsekit.pack(w), "auto"),
             ("sparsekit.pack int8", "pack", lambda w: sparsekit.pack(w, quantize="int8"),
              "int8")]
    for name, attr, build, prec in kinds:
        if not hasattr(sparsekit, attr):
            continue
        try:
            packed = [(build(w), b) for w, b in pruned]
            predict = _sparsekit_chain(packed)
            predict(np.zeros((1, pruned[0][0].shape[1]), np.float32))
            save, how = _sparsekit_saver(packed)
            size = file_size(save, ".bin")
        except Exception as e:
            notes.append(f"{name} not measured: {type(e).__name__}: {e}")
            continue
        comp = f"pruned {sparsity:.0%}" + (" + int8" if prec == "int8" else "")
        out.append((Variant(name, "sparsekit", comp, lambda x, p=predict: (lambda: p(x)),
                            size, how), predict))
    return out


def _sparsekit_saver(packed):
    """sparsekit.save of a runtime Model when this build has the runtime;
    else the format arrays in one .npz."""
    import sparsekit

    try:
        from sparsekit.runtime import Linear, Model

        last = len(packed) - 1
        model = Model([Linear(w, b, activation="relu" if i < last else None)
                       for i, (w, b) in enumerate(packed)])

        def save(path):
            sparsekit.save(model, path)
        file_size(save, ".sk")  # the runtime may not take every format yet
        return save, "sparsekit.save (runtime model file)"
    except (ImportError, AttributeError, TypeError, ValueError):
        pass
    arrays = {}
    for i, (w, b) in enumerate(packed):
        arrays[f"b{i}"] = b
        for attr in ("data", "indices", "indptr", "q", "scale"):
            if hasattr(w, attr):
                arrays[f"{attr}{i}"] = np.asarray(getattr(w, attr))
    return _save_npz(arrays), "format arrays + biases, .npz"


def digits_benchmark(args, rng):
    sparsity = 0.9 if args.sparsity is None else args.sparsity
    if args.input_shape:
        raise UsageError("argument --input-shape: only for --torch / --onnx / --sparsekit")
    xtr, ytr, xte, yte = load_digits_split(rng)
    # one BLAS thread: small GEMMs on a shared machine stall when threads wait
    with _one_blas_thread():
        sizes = [64, args.hidden, args.hidden, 10]
        params = train(init_mlp(sizes, rng), xtr, ytr, args.epochs, rng)
        dense = [(w.copy(), b.copy()) for w, b in params]
        masks = prune_by_magnitude(params, sparsity)
        pruned_before_ft = accuracy(lambda x: forward_numpy(params, x), xte, yte)
        pruned = train(params, xtr, ytr, args.epochs, rng, masks=masks)
    comp = f"pruned {sparsity:.0%} + fine-tuned"
    variants = []

    def add(v, predict):
        v.quality = {"accuracy": accuracy(predict, xte, yte)}
        variants.append(v)

    def numpy_variant(name, ps, compression, baseline):
        predict = (lambda p: lambda x: forward_numpy(p, x))(ps)
        add(Variant(name, "numpy", compression, lambda x: (lambda: predict(x)),
                    file_size(_save_npz(_dense_arrays(ps)), ".npz"), "dense arrays, .npz",
                    baseline=baseline), predict)

    numpy_variant("dense fp32", dense, "none", True)
    torch_mods = _torch_variants(dense, pruned, comp, add)
    numpy_variant("pruned, dense fp32", pruned, comp, False)
    notes = []
    for v, predict in _sparsekit_variants(pruned, sparsity, notes):
        v.compression = v.compression.replace(f"pruned {sparsity:.0%}", comp)
        add(v, predict)
    _accelerate_variant(torch_mods, comp, add, notes)
    notes[:0] = [f"digits: {len(ytr)} training / {len(yte)} test images; MLP "
                 f"{'-'.join(map(str, sizes))} trained {args.epochs} epochs, pruned to "
                 f"{sparsity:.0%} per layer by magnitude "
                 f"(test accuracy {pruned_before_ft:.4f} right after pruning), fine-tuned "
                 f"{args.epochs} epochs with the mask fixed."]
    batches = args.batch or BATCHES

    def make_input(b):
        return np.ascontiguousarray(np.resize(xte, (b, xte.shape[1])), dtype=np.float32)
    return {"title": "digits MLP", "variants": variants, "batches": batches,
            "make_input": make_input, "quality_keys": ["accuracy"], "notes": notes,
            "settings": {"sparsity": sparsity, "hidden": args.hidden}}


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _torch_model(params):
    import torch

    layers = []
    for i, (w, b) in enumerate(params):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(params) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def _torch_runner(model):
    import torch

    def make_run(x):
        xt = torch.from_numpy(x)

        def run():
            with torch.inference_mode():
                return model(xt)
        return run

    def predict(x):
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()
    return make_run, predict


def _torch_variants(dense, pruned, comp, add):
    try:
        import torch
    except ImportError:
        return None
    import warnings

    def saver(model):
        return lambda path: torch.save(model.state_dict(), path)
    fp32, pruned_model = _torch_model(dense), _torch_model(pruned)
    for name, model, c, base in (("dense fp32", fp32, "none", True),
                                 ("pruned, dense fp32", pruned_model, comp, False)):
        make_run, predict = _torch_runner(model)
        add(Variant(name, "torch", c, make_run, file_size(saver(model), ".pt"),
                    "torch.save(state_dict)", baseline=base), predict)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(_torch_model(pruned), {torch.nn.Linear},
                                                   dtype=torch.qint8)
    make_run, predict = _torch_runner(q)
    add(Variant("pruned, dynamic int8", "torch", comp + " + int8", make_run,
                file_size(saver(q), ".pt"), "torch.save(state_dict)"), predict)
    return pruned_model


def _accelerate_variant(pruned_model, comp, add, notes):
    """sparsekit.torch.accelerate on the pruned torch model, when it exists."""
    if pruned_model is None:
        return
    try:
        skt = importlib.import_module("sparsekit.torch")
    except ImportError:
        return
    if not hasattr(skt, "accelerate"):
        return
    import copy

    import torch

    for quant in (None, "dynamic"):
        name = f"sparsekit.torch.accelerate{'' if quant is None else ' int8'}"
        try:
            model = skt.accelerate(copy.deepcopy(pruned_model), quantize=quant)
            make_run, predict = _torch_runner(model)
            size = file_size(lambda path, m=model: torch.save(m, path), ".pt")
        except Exception as e:  # e.g. a build without int8 kernels
            notes.append(f"{name} not measured: {type(e).__name__}: {e}")
            continue
        add(Variant(name, "sparsekit", comp + ("" if quant is None else " + int8"), make_run,
                    size, "torch.save(module)"), predict)

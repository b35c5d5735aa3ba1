"""bench-model --onnx FILE / --sparsekit FILE / --torch FILE|MODULE:FACTORY:
models from files.

These need the converters and runtime (sparsekit.onnx.load, sparsekit.load,
sparsekit.save); on a build without them the command says so and exits with
a usage error. An ONNX model is compared with ONNX Runtime running the same
file on the same random input (cosine and max relative error).
"""
import importlib
import os

import numpy as np

from sparsekit.bench.model import UsageError, Variant, file_size

BATCHES = [1, 32]


def _parse_shape(text, option="--input-shape"):
    try:
        dims = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise UsageError(f"argument {option}: expected positive integers like 3,32,32, "
                         f"got {text!r}")
    return dims


def _call(model, x):
    """Run a sparsekit runtime model on a batch, whichever entry point it offers."""
    for attr in ("__call__", "run", "predict", "forward"):
        fn = getattr(model, attr, None)
        if callable(fn):
            return np.asarray(fn(x))
    raise UsageError(f"the loaded {type(model).__name__} has no call/run/predict method")


def _require_file(path, option):
    if not os.path.isfile(path):
        raise UsageError(f"argument {option}: no such file: {path}")


def _sparsekit_attr(module, attr, option, what):
    try:
        mod = importlib.import_module(module)
    except ImportError:
        mod = None
    fn = getattr(mod, attr, None) if mod else None
    if fn is None:
        raise UsageError(f"argument {option}: needs {module}.{attr} ({what}), which this "
                         "sparsekit build does not have")
    return fn


def _quality(y, ref):
    y, ref = np.asarray(y, np.float64).reshape(len(y), -1), np.asarray(ref, np.float64)
    ref = ref.reshape(len(ref), -1)
    cos = (y * ref).sum(1) / (np.linalg.norm(y, axis=1) * np.linalg.norm(ref, axis=1) + 1e-30)
    err = np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30)
    return {"cosine_min": float(cos.min()), "max_rel_err": float(err)}


def _save_size(model):
    import sparsekit

    if not hasattr(sparsekit, "save"):
        return None, "not saved: this build has no sparsekit.save"
    try:
        return file_size(lambda p: sparsekit.save(model, p), ".sk"), "sparsekit.save"
    except Exception as e:  # a model sparsekit.save does not take
        return None, f"not saved: {type(e).__name__}: {e}"


def onnx_benchmark(args, rng):
    _require_file(args.onnx, "--onnx")
    load = _sparsekit_attr("sparsekit.onnx", "load", "--onnx", "the ONNX importer")
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("argument --onnx: the reference run needs onnxruntime "
                         "(pip install onnxruntime)") from None
    from sparsekit.bench.systems import ort_session_options

    opts = ort_session_options(args.threads)
    try:
        sess = ort.InferenceSession(args.onnx, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types: a file it cannot read
        raise UsageError(f"argument --onnx: onnxruntime cannot load {args.onnx}: "
                         f"{str(e).strip()}") from None
    inputs = sess.get_inputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(float)":
        raise UsageError("argument --onnx: bench-model handles models with one float input; "
                         f"this one has {[(i.name, i.type) for i in inputs]}")
    name, dims = inputs[0].name, inputs[0].shape[1:]
    if args.input_shape:
        sample = _parse_shape(args.input_shape)
    elif all(isinstance(d, int) and d > 0 for d in dims):
        sample = tuple(dims)
    else:
        raise UsageError(f"argument --input-shape: the model's input {name} has dimensions "
                         f"{dims} after the batch; give them, e.g. --input-shape 3,32,32")
    model = load(args.onnx)
    check = rng.standard_normal((8,) + sample).astype(np.float32)
    ref = sess.run(None, {name: check})[0]
    size, how = _save_size(model)
    variants = [
        Variant("ONNX Runtime", "onnxruntime", "as in the file",
                lambda x: (lambda: sess.run(None, {name: x})),
                os.path.getsize(args.onnx), "the .onnx file", {"cosine_min": 1.0,
                                                               "max_rel_err": 0.0}, True),
        Variant("sparsekit.onnx.load", "sparsekit", "as imported",
                lambda x: (lambda: _call(model, x)), size, how, _quality(_call(model, check),
                                                                         ref)),
    ]
    batches = args.batch or BATCHES
    return {"title": os.path.basename(args.onnx), "variants": variants, "batches": batches,
            "make_input": lambda b: rng.standard_normal((b,) + sample).astype(np.float32),
            "quality_keys": ["cosine_min", "max_rel_err"], "settings": {"input": list(sample)}}


def saved_benchmark(args, rng):
    _require_file(args.sparsekit, "--sparsekit")
    load = _sparsekit_attr("sparsekit", "load", "--sparsekit", "the model runtime")
    try:
        model = load(args.sparsekit)
    except ValueError as e:  # truncated, corrupted or not a sparsekit file
        raise UsageError(f"argument --sparsekit: {e}") from None
    if args.input_shape:
        sample = _parse_shape(args.input_shape)
    elif getattr(model, "input_shape", None):
        sample = tuple(int(d) for d in model.input_shape)
    else:
        raise UsageError("argument --input-shape: the saved model does not record its input "
                         "shape; give it, e.g. --input-shape 64")
    variants = [Variant("sparsekit.load", "sparsekit", "as saved",
                        lambda x: (lambda: _call(model, x)), os.path.getsize(args.sparsekit),
                        "the file", {}, True)]
    batches = args.batch or BATCHES
    return {"title": os.path.basename(args.sparsekit), "variants": variants,
            "batches": batches, "quality_keys": [],
            "make_input": lambda b: rng.standard_normal((b,) + sample).astype(np.float32),
            "notes": ["no reference model: latency, throughput and size only"],
            "settings": {"input": list(sample)}}


def _load_torch_model(spec):
    """A module from a file written by torch.save(model), or 'pkg.mod:factory'."""
    import torch

    if os.path.isfile(spec):
        try:
            model = torch.load(spec, map_location="cpu", weights_only=False)
        except Exception as e:
            raise UsageError(f"argument --torch: cannot load {spec}: {type(e).__name__}: "
                             f"{e}") from None
    elif ":" in spec:
        mod_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise UsageError(f"argument --torch: cannot import {spec}: {e}") from None
        model = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) \
            else factory
    else:
        raise UsageError(f"argument --torch: {spec} is neither a file nor 'module:factory'")
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"argument --torch: expected a torch.nn.Module, got "
                         f"{type(model).__name__} (save the module itself, not a state_dict)")
    return model.eval()


def torch_benchmark(args, rng):
    try:
        import torch
    except ImportError:
        raise UsageError("argument --torch: needs PyTorch (pip install torch)") from None
    import copy
    import warnings

    from sparsekit.bench.model_minilm import (
        _accelerate, _csr_linear_class, _prune_linears, _replace_linears)

    if not args.input_shape:
        raise UsageError("argument --input-shape: required with --torch (per-sample shape, "
                         "e.g. 64 or 3,32,32)")
    sample = _parse_shape(args.input_shape)
    ref_model = _load_torch_model(args.torch)
    check = torch.from_numpy(rng.standard_normal((8,) + sample).astype(np.float32))

    def forward(model, x):
        with torch.inference_mode():
            return model(x)
    ref = forward(ref_model, check).numpy()
    variants, notes = [], []

    def add(name, compression, build, baseline=False):
        # sparsekit modules pickled whole: that file loads without re-running accelerate
        # (a state_dict needs a model accelerated the same way to load into)
        whole = "sparsekit" in name or "CSR" in name
        how = "torch.save(module)" if whole else "torch.save(state_dict)"
        try:
            model = build()
            q = _quality(forward(model, check).numpy(), ref)
            size = file_size(lambda p: torch.save(model if whole else model.state_dict(), p),
                             ".pt")
        except Exception as e:  # a converter may refuse a model or a build may lack int8
            notes.append(f"{name} not measured: {type(e).__name__}: {e}")
            return
        variants.append(Variant(name, "sparsekit" if whole else "torch",
                                compression, lambda x, m=model: (lambda: forward(m, x)),
                                size, how, q, baseline))

    add("torch", "as given", lambda: ref_model, baseline=True)

    def torch_int8():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(copy.deepcopy(ref_model),
                                                          {torch.nn.Linear}, dtype=torch.qint8)
    add("torch dynamic int8", "int8 Linear (per tensor)", torch_int8)
    base, comp = ref_model, "as given"
    if args.sparsity:
        base = _prune_linears(torch, copy.deepcopy(ref_model), args.sparsity)
        comp = f"Linear weights pruned {args.sparsity:.0%} (no retraining)"
        add("torch, pruned", comp, lambda: base)
    accelerate = _accelerate()
    if accelerate:
        add("sparsekit.torch.accelerate", comp, lambda: accelerate(copy.deepcopy(base)))
        add("sparsekit.torch.accelerate int8", comp + " + int8",
            lambda: accelerate(copy.deepcopy(base), quantize="dynamic"))
    else:  # sparsekit's kernels still run the Linear layers, through CSR modules
        notes.append("this sparsekit build has no sparsekit.torch.accelerate: Linear layers "
                     "run as CSR modules instead")
        add("sparsekit CSR Linear layers", comp,
            lambda: _replace_linears(torch, copy.deepcopy(base), _csr_linear_class(torch)))
    batches = args.batch or BATCHES
    return {"title": os.path.basename(args.torch), "variants": variants, "batches": batches,
            "make_input": lambda b: torch.from_numpy(
                rng.standard_normal((b,) + sample).astype(np.float32)),
            "quality_keys": ["cosine_min", "max_rel_err"], "notes": notes,
            "settings": {"input": list(sample), "sparsity": args.sparsity or 0.0}}

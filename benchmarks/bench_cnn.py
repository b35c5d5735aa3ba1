"""LeNet-style CNN on scikit-learn's 8x8 digits, pruned to 90%: the sparsekit
runtime (torch-free) against the same model in torch fp32.

    python benchmarks/bench_cnn.py [--threads 1] [--batch 256] [--repeats 30]

Trains for a few seconds, prunes every conv/linear weight to 90% zeros by
magnitude (torch.nn.utils.prune), fine-tunes with the masks, then times
inference interleaved (torch, runtime, torch, ...) and reports medians, their
ratio, test accuracy of both and the saved file size vs the fp32 state_dict.
"""
import argparse
import io
import os
import statistics
import tempfile
import time

import numpy as np


def build(torch):
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 2 * 2, 128), nn.ReLU(), nn.Linear(128, 10))


def train(torch, model, x, y, epochs, lr=2e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--sparsity", type=float, default=0.9)
    args = ap.parse_args()

    import torch
    import torch.nn.utils.prune as prune
    from sklearn.datasets import load_digits
    from threadpoolctl import threadpool_limits

    import sparsekit
    import sparsekit.torch as skt

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    sparsekit.set_num_threads(args.threads)
    d = load_digits()
    x = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
    model = build(torch)
    train(torch, model, xtr, ytr, epochs=25)
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            prune.l1_unstructured(m, "weight", args.sparsity)
    train(torch, model, xtr, ytr, epochs=10, lr=1e-3)
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            prune.remove(m, "weight")
    model.eval()
    rt = skt.to_runtime(model)
    rt8 = skt.to_runtime(model, quantize="dynamic") if hasattr(sparsekit, "QuantizedMatrix") \
        else None

    xb = xte[:args.batch] if args.batch <= len(xte) else xte.repeat(
        args.batch // len(xte) + 1, 1, 1, 1)[:args.batch]
    xb_np = xb.numpy()
    with torch.inference_mode():
        acc_t = (model(xte).argmax(1) == yte).float().mean().item()
        ref = model(xb).numpy()
    acc_r = float((rt(xte.numpy()).argmax(1) == yte.numpy()).mean())
    acc_8 = float((rt8(xte.numpy()).argmax(1) == yte.numpy()).mean()) if rt8 else None
    err = float(np.abs(rt(xb_np) - ref).max())

    def t_torch():
        with torch.inference_mode():
            model(xb)

    def t_rt():
        rt(xb_np)

    systems = [("torch fp32", t_torch), ("sparsekit runtime", t_rt)]
    if rt8 is not None:
        systems.append(("sparsekit int8", lambda: rt8(xb_np)))
    times = {name: [] for name, _ in systems}
    with threadpool_limits(args.threads):
        for _, f in systems:
            for _ in range(3):
                f()
        for _ in range(args.repeats):
            for name, f in systems:
                t0 = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "cnn.spk")
        sparsekit.save(rt, p)
        size = os.path.getsize(p)
        if rt8 is not None:
            sparsekit.save(rt8, p)
            size8 = os.path.getsize(p)
    print(f"LeNet-style CNN, digits 8x8, {args.sparsity:.0%} pruned, batch {args.batch}, "
          f"{args.threads} thread(s), {args.repeats} interleaved repeats (median)")
    print(f"  test accuracy: torch {acc_t:.3f}, runtime {acc_r:.3f}"
          f"{f', runtime int8 {acc_8:.3f}' if rt8 else ''}; max |diff| fp32 {err:.2e}")
    for k, v in med.items():
        print(f"  {k:<18} {v * 1e3:8.3f} ms")
    print(f"  speedup runtime vs torch fp32: {med['torch fp32'] / med['sparsekit runtime']:.2f}x")
    if rt8 is not None:
        print(f"  speedup runtime int8 vs torch fp32: "
              f"{med['torch fp32'] / med['sparsekit int8']:.2f}x")
    sd = len(buf.getvalue())
    print(f"  file fp32 csr: {size} B ({size / sd:.1%} of the fp32 state_dict {sd} B)")
    if rt8 is not None:
        print(f"  file int8:     {size8} B ({size8 / sd:.1%} of the fp32 state_dict)")
    print(rt.summary())


if __name__ == "__main__":
    main()

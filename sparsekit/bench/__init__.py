"""sparsekit.bench: the benchmark users run (`sparsekit bench`, `sparsekit bench-model`).

    shapes.py   layer shapes named after models (bert-base, minilm, resnet50 1×1 convs)
    patterns.py pruned weights: unstructured, N:M, RxC blocks (NumPy only)
    systems.py  sparsekit formats and peers (NumPy, SciPy, PyTorch, ONNX Runtime),
                each included only if it can run here
    timing.py   thread pinning, warm-up, interleaved rounds, median and spread
    sweep.py    groups (layer × threads) → checked, timed, speedup vs best dense fp32
    machine.py  CPU, ISA chosen, threads, versions, environment warnings
    schema.py   results.json schema + validator;  report.py / plot.py  md, json, png
    run.py      `sparsekit bench`;  cli.py  its arguments (and bench-model's registration)
    model.py    `sparsekit bench-model` (variants timed alike);  model_cli.py  its arguments
    model_digits.py / model_minilm.py / model_files.py
                --model digits, --model minilm, --torch / --onnx / --sparsekit FILE
    torch_csr.py  CSRLinear for builds without sparsekit.torch;  progress.py  the bar

Nothing here is imported by `import sparsekit`: optional peers stay optional.
"""

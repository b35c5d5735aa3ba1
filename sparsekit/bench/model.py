def run_bench_model(args):
    raise ValueError("bench-model: not built yet")

"""The schema of results.json (JSON Schema draft 2020-12 subset), and a small
validator for exactly the keywords used here, so checking a file needs no
extra package. Bump SCHEMA_ID when a field changes meaning or goes away.

Top level: schema id, the command line, the machine (machine.py), the sweep
settings, the systems measured and skipped, one record per measurement, and
errors (a system that raised on some case is listed there, not in results).
Times are seconds per call; speedup is (median of the fastest dense fp32
system in the same group) / (this median), so > 1 means faster than dense.
"""
SCHEMA_ID = "sparsekit-bench/1"

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR = {"type": "string"}
_INT = {"type": "integer"}

def _d(schema, text):
    return dict(schema, description=text)


RESULT = {
    "type": "object",
    "description": "one system timed on one layer, pattern, sparsity and thread count",
    "required": ["model", "layer", "N", "K", "M", "threads", "system", "library", "format",
                 "precision", "pattern", "sparsity", "median_s", "q25_s", "q75_s", "min_s",
                 "max_s", "samples", "calls_per_sample", "speedup", "speedup_low",
                 "speedup_high", "baseline_system",
                 "gflops", "weight_bytes", "bytes_per_weight", "max_rel_err", "check"],
    "properties": {
        "model": _d(_STR, "preset the layer comes from, or 'custom' for --shape"),
        "layer": _d(_STR, "layer name within the preset"),
        "N": _d(_INT, "output features (rows of W)"),
        "K": _d(_INT, "input features (columns of W)"),
        "M": _d(_INT, "rows of X: tokens, batch or pixels"),
        "threads": _d(_INT, "threads every library was limited to"),
        "system": _d(_STR, "e.g. sparsekit-csr, numpy, torch-sparse-csr, ort-dynamic-int8"),
        "library": _d(_STR, "sparsekit, numpy, scipy, torch or onnxruntime"),
        "format": {"enum": ["dense", "csr", "int8", "sparse-int8", "auto"],
                   "description": "how the weight is stored; dense and int8 ignore sparsity"},
        "precision": {"enum": ["fp32", "int8"]},
        "pattern": _d(_STR, "'dense', 'unstructured', 'N:M' or 'RxC'"),
        "sparsity": _d(_NUM_OR_NULL, "requested fraction of zero weights; null for dense "
                                     "systems, measured once per layer"),
        "actual_sparsity": _d(_NUM_OR_NULL, "fraction of zeros in the generated weight"),
        "median_s": _d(_NUM, "median seconds per call over the rounds"),
        "q25_s": _d(_NUM, "first quartile, seconds per call"),
        "q75_s": _d(_NUM, "third quartile, seconds per call"),
        "min_s": _d(_NUM, "fastest sample, seconds per call"),
        "max_s": _d(_NUM, "slowest sample, seconds per call"),
        "samples": _d(_INT, "interleaved rounds (one sample each)"),
        "calls_per_sample": _d(_INT, "calls averaged in one sample"),
        "detail": {"type": ["string", "null"],
                   "description": "what the system chose, e.g. the class sparsekit.pack "
                                  "returned"},
        "speedup": _d(_NUM_OR_NULL, "baseline median / this median (> 1: faster)"),
        "speedup_low": _d(_NUM_OR_NULL, "baseline median / q75_s"),
        "speedup_high": _d(_NUM_OR_NULL, "baseline median / q25_s"),
        "baseline_system": {"type": ["string", "null"],
                            "description": "fastest dense fp32 system of this layer/threads"},
        "gflops": _d(_NUM_OR_NULL, "2·M·N·K / median / 1e9 (dense-equivalent rate)"),
        "weight_bytes": {"type": ["integer", "null"],
                         "description": "bytes the weight occupies in this system"},
        "bytes_per_weight": _d(_NUM_OR_NULL, "weight_bytes / (N·K); dense fp32 is 4"),
        "max_rel_err": _d(_NUM, "max |y - y_ref| / max |y_ref|, reference in float64"),
        "check": {"enum": ["ok", "FAIL"],
                  "description": "max_rel_err within 1e-4 (fp32) or 0.1 (int8)"},
    },
}

SYSTEM = {
    "type": "object",
    "required": ["name", "library", "format", "precision"],
    "properties": {"name": _STR, "library": _STR, "format": _STR, "precision": _STR,
                   "reason": _STR},
}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "type": "object",
    "required": ["schema", "command", "machine", "settings", "warnings", "systems",
                 "skipped_systems", "results", "errors"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "command": {"type": "array", "items": _STR},
        "machine": {
            "type": "object",
            "required": ["cpu", "arch", "isa", "kernels", "usable_cpus", "versions", "env",
                         "date"],
            "properties": {"cpu": _STR, "arch": _STR, "isa": _STR, "kernels": {"type": "object"},
                           "usable_cpus": _INT, "versions": {"type": "object"},
                           "env": {"type": "object"}, "date": _STR},
        },
        "settings": {
            "type": "object",
            "required": ["repeat", "min_sample_s", "threads", "patterns", "sparsities",
                         "formats", "peers", "seed", "quick"],
            "properties": {"repeat": _INT, "min_sample_s": _NUM,
                           "threads": {"type": "array", "items": _INT},
                           "patterns": {"type": "array", "items": _STR},
                           "sparsities": {"type": "array", "items": _NUM},
                           "formats": {"type": "array", "items": _STR},
                           "peers": _STR, "seed": _INT, "quick": {"type": "boolean"},
                           "cold_cache": {"type": "boolean", "description":
                                          "caches flushed before every timed call"}},
        },
        "warnings": {"type": "array", "items": _STR},
        "systems": {"type": "array", "items": SYSTEM},
        "skipped_systems": {"type": "array", "items": SYSTEM},
        "results": {"type": "array", "items": RESULT},
        "errors": {"type": "array", "items": {
            "type": "object", "required": ["where", "error"],
            "properties": {"where": _STR, "error": _STR}}},
    },
}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(doc, schema=SCHEMA, path="$"):
    """Raise ValueError naming the first place where `doc` breaks `schema`."""
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](doc) for t in types):
            raise ValueError(f"{path}: expected {' or '.join(types)}, got {type(doc).__name__}")
    if "const" in schema and doc != schema["const"]:
        raise ValueError(f"{path}: expected {schema['const']!r}, got {doc!r}")
    if "enum" in schema and doc not in schema["enum"]:
        raise ValueError(f"{path}: expected one of {schema['enum']}, got {doc!r}")
    if isinstance(doc, dict):
        for key in schema.get("required", ()):
            if key not in doc:
                raise ValueError(f"{path}: missing required field {key!r}")
        for key, sub in schema.get("properties", {}).items():
            if key in doc:
                validate(doc[key], sub, f"{path}.{key}")
    if isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            validate(item, schema["items"], f"{path}[{i}]")


# ---- bench-model: model.json ----------------------------------------------------------
MODEL_SCHEMA_ID = "sparsekit-bench-model/1"

_TIMING = {
    "type": "object",
    "required": ["median_s", "q25_s", "q75_s", "min_s", "max_s", "samples",
                 "throughput_per_s", "speedup"],
    "properties": {
        "median_s": _d(_NUM, "median seconds per call (one call = one batch)"),
        "q25_s": _NUM, "q75_s": _NUM, "min_s": _NUM, "max_s": _NUM, "samples": _INT,
        "throughput_per_s": _d(_NUM, "batch size / median_s: samples per second"),
        "speedup": _d(_NUM, "fastest baseline variant's median / this median"),
    },
}

MODEL_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": MODEL_SCHEMA_ID,
    "type": "object",
    "required": ["schema", "model", "command", "machine", "settings", "warnings",
                 "quality_keys", "variants"],
    "properties": {
        "schema": {"const": MODEL_SCHEMA_ID},
        "model": _STR,
        "command": {"type": "array", "items": _STR},
        "machine": SCHEMA["properties"]["machine"],
        "settings": {"type": "object", "required": ["threads", "repeat", "batches"],
                     "properties": {"threads": _INT, "repeat": _INT,
                                    "batches": {"type": "array", "items": _INT}}},
        "warnings": {"type": "array", "items": _STR},
        "quality_keys": {"type": "array", "items": _STR,
                         "description": "keys of each variant's quality, e.g. accuracy, "
                                        "cosine_min, max_rel_err"},
        "variants": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "system", "compression", "baseline", "size_bytes",
                         "size_how", "quality", "batches"],
            "properties": {
                "name": _STR, "system": _STR, "compression": _STR,
                "baseline": _d({"type": "boolean"}, "an uncompressed fp32 variant"),
                "size_bytes": {"type": ["integer", "null"],
                               "description": "bytes written when saving it"},
                "size_how": _STR,
                "quality": {"type": "object"},
                "batches": _d({"type": "object"}, "batch size (as a string) -> timing; "
                              "every value follows the timing schema"),
            }}},
    },
}


def validate_model(doc):
    """validate() for model.json, including every per-batch timing."""
    validate(doc, MODEL_SCHEMA)
    for i, v in enumerate(doc["variants"]):
        for b, st in v["batches"].items():
            validate(st, _TIMING, f"$.variants[{i}].batches[{b}]")

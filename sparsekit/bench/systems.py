"""The systems a benchmark compares: sparsekit's formats and the peers a user
would otherwise reach for. Each is included only when it can run here.

A System turns a pruned fp32 weight W[N, K] into a `Prepared` runner for a
fixed input X[M, K] (converted to the library's own type outside the timed
call, as a user of that library would hold it). Thread counts are set for all
libraries at once by `pin_threads` before a group is measured; ONNX Runtime
takes its thread count when its session is built, so `prepare` gets it too.

format     what the weight is stored as; "dense" systems ignore sparsity
precision  "fp32" or "int8" (weights and dynamically quantized activations)
"""
import logging
import os
import tempfile
import warnings
from collections import namedtuple

import numpy as np

FORMATS = ("dense", "csr", "int8", "sparse-int8", "auto")
SPARSE_FORMATS = ("csr", "sparse-int8", "auto")
PEER_LIBRARIES = ("numpy", "scipy", "torch", "onnxruntime")
PEER_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "pytorch": "torch"}

# run() -> library output; to_numpy(output) -> float ndarray [M, N];
# weight_bytes: bytes the weight occupies in this system (None if unknown);
# detail: what the system chose, e.g. the format sparsekit.pack picked
Prepared = namedtuple("Prepared", "run to_numpy weight_bytes detail", defaults=(None,))


class System:
    name = ""
    library = ""
    format = "dense"
    precision = "fp32"
    requires = ()          # modules that must import
    sparsekit_attr = None  # sparsekit attribute that must exist (format class)

    def available(self):
        """(True, "") or (False, why not)."""
        for mod in self.requires:
            try:
                __import__(mod)
            except Exception as e:  # a broken install counts as missing
                return False, f"{mod} not importable ({type(e).__name__}: {e})"
        if self.sparsekit_attr:
            import sparsekit

            if not hasattr(sparsekit, self.sparsekit_attr):
                return False, f"this sparsekit build has no sparsekit.{self.sparsekit_attr}"
        return True, ""

    def prepare(self, w, x, threads):
        raise NotImplementedError

    def describe(self):
        return {"name": self.name, "library": self.library, "format": self.format,
                "precision": self.precision}


def _identity(y):
    return y


# ---- sparsekit -------------------------------------------------------------------
class _SparsekitFormat(System):
    library = "sparsekit"
    build = "from_float"  # the constructor of sparsekit.<sparsekit_attr> used

    def _build(self, w, m):
        import sparsekit

        return getattr(getattr(sparsekit, self.sparsekit_attr), self.build)(w)

    def prepare(self, w, x, threads):
        import sparsekit

        packed = self._build(w, x.shape[0])
        nbytes = getattr(packed, "nbytes", None)
        return Prepared(lambda: sparsekit.linear(x, packed), _identity,
                        int(nbytes) if nbytes is not None else None,
                        type(packed).__name__)


class SparsekitDense(_SparsekitFormat):
    """sparsekit.linear with a plain ndarray weight: its dense (NumPy) fallback."""
    name = "sparsekit-dense-fallback"

    def _build(self, w, m):
        return w


class SparsekitCSR(_SparsekitFormat):
    name = "sparsekit-csr"
    format = "csr"
    sparsekit_attr = "CSRMatrix"
    build = "from_dense"


class SparsekitInt8(_SparsekitFormat):
    name = "sparsekit-int8"
    format = "int8"
    precision = "int8"
    sparsekit_attr = "QuantizedMatrix"


class SparsekitSparseInt8(_SparsekitFormat):
    name = "sparsekit-sparse-int8"
    format = "sparse-int8"
    precision = "int8"
    sparsekit_attr = "SparseInt8Matrix"


class SparsekitPack(_SparsekitFormat):
    """sparsekit.pack: whichever fp32 format sparsekit picks for this weight
    and this M (detail records the choice)."""
    name = "sparsekit-pack"
    format = "auto"
    sparsekit_attr = "pack"
    quantize = None

    def _build(self, w, m):
        import sparsekit

        return sparsekit.pack(w, quantize=self.quantize, m=max(m, 1))


class SparsekitPackInt8(SparsekitPack):
    """sparsekit.pack(quantize="int8"): its choice among the int8 formats."""
    name = "sparsekit-pack-int8"
    precision = "int8"
    quantize = "int8"


# ---- NumPy / SciPy ------------------------------------------------------------------
class NumpyDense(System):
    name = "numpy"
    library = "numpy"

    def prepare(self, w, x, threads):
        wt = w.T  # BLAS reads the transposed view without a copy
        return Prepared(lambda: x @ wt, _identity, w.nbytes)


class ScipyCSR(System):
    name = "scipy-csr"
    library = "scipy"
    format = "csr"
    requires = ("scipy.sparse",)

    def prepare(self, w, x, threads):
        import scipy.sparse

        m = scipy.sparse.csr_matrix(w)
        nbytes = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
        return Prepared(lambda: (m @ x.T).T, _identity, nbytes)


# ---- PyTorch --------------------------------------------------------------------------
def _torch_tensors(w, x):
    import torch

    return torch, torch.from_numpy(np.ascontiguousarray(w)), torch.from_numpy(x)


def _torch_numpy(y):
    return y.numpy()


class TorchDense(System):
    name = "torch"
    library = "torch"
    requires = ("torch",)

    def prepare(self, w, x, threads):
        torch, wt, xt = _torch_tensors(w, x)
        lin = torch.nn.functional.linear

        def run():
            with torch.inference_mode():
                return lin(xt, wt)
        return Prepared(run, _torch_numpy, w.nbytes)


class TorchSparseCSR(System):
    """torch.sparse CSR weight; torch.sparse.mm(W, Xᵀ)ᵀ was the fastest torch
    spelling measured here (F.linear with a CSR weight is several times slower)."""
    name = "torch-sparse-csr"
    library = "torch"
    format = "csr"
    requires = ("torch",)

    def prepare(self, w, x, threads):
        torch, wt, xt = _torch_tensors(w, x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            wc = wt.to_sparse_csr()
        nbytes = sum(t.numel() * t.element_size()
                     for t in (wc.values(), wc.col_indices(), wc.crow_indices()))

        def run():
            with torch.inference_mode():
                return torch.sparse.mm(wc, xt.t()).t()
        return Prepared(run, lambda y: y.contiguous().numpy(), nbytes)


class TorchDynamicInt8(System):
    """torch.ao dynamic quantized Linear (int8 weights per tensor, x86/fbgemm engine)."""
    name = "torch-dynamic-int8"
    library = "torch"
    format = "int8"
    precision = "int8"
    requires = ("torch",)

    def prepare(self, w, x, threads):
        torch, wt, xt = _torch_tensors(w, x)
        engines = torch.backends.quantized.supported_engines
        for engine in ("x86", "fbgemm"):
            if engine in engines:
                torch.backends.quantized.engine = engine
                break
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            lin.weight.copy_(wt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notes
            q = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
        qw = q[0].weight()
        nbytes = qw.numel() * qw.element_size() + 8

        def run():
            with torch.inference_mode():
                return q(xt)
        return Prepared(run, _torch_numpy, nbytes)


# ---- ONNX Runtime ------------------------------------------------------------------------
def _onnx_matmul_model(w):
    """Y = X · Wᵀ as one ONNX MatMul with Wᵀ [K, N] a constant initializer
    (the form exporters write; ORT prepacks it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n, k = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "Wt"], ["Y"])], "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "Wt")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)  # readable by older runtimes too
    onnx.checker.check_model(model)
    return model


def ort_session_options(threads):
    """ONNX Runtime SessionOptions for a timed session: `threads` intra-op
    threads, sequential, quiet, and pool threads that do not spin between runs.
    ORT spins by default after each run; in interleaved rounds that spinning
    holds the second core while the next system is timed (at 2 threads torch
    and sparsekit measured ~2x slower at batch 1 because of it)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def _ort_session(model_bytes, threads):
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, ort_session_options(threads),
                                providers=["CPUExecutionProvider"])


def _initializer_bytes(model):
    from onnx import numpy_helper

    return sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)


def _ort_prepared(model, x, threads):
    sess = _ort_session(model.SerializeToString(), threads)
    feed = {"X": x}
    return Prepared(lambda: sess.run(None, feed)[0], _identity, _initializer_bytes(model))


class OrtMatMul(System):
    name = "ort"
    library = "onnxruntime"
    requires = ("onnx", "onnxruntime")

    def prepare(self, w, x, threads):
        return _ort_prepared(_onnx_matmul_model(w), x, threads)


class OrtDynamicInt8(System):
    """onnxruntime.quantization.quantize_dynamic of the MatMul model with its
    defaults (int8 weights per tensor): what a user gets from the ORT docs."""
    name = "ort-dynamic-int8"
    library = "onnxruntime"
    format = "int8"
    precision = "int8"
    requires = ("onnx", "onnxruntime", "onnxruntime.quantization")

    def prepare(self, w, x, threads):
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint
        try:
            model = self._quantize(w, onnx, QuantType, quantize_dynamic)
        finally:
            root.setLevel(level)
        return _ort_prepared(model, x, threads)

    @staticmethod
    def _quantize(w, onnx, QuantType, quantize_dynamic):
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
            onnx.save(_onnx_matmul_model(w), src)
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
            return onnx.load(dst)


ALL_SYSTEMS = (
    SparsekitDense(), SparsekitCSR(), SparsekitInt8(), SparsekitSparseInt8(), SparsekitPack(),
    SparsekitPackInt8(),
    NumpyDense(), ScipyCSR(), TorchDense(), TorchSparseCSR(), TorchDynamicInt8(),
    OrtMatMul(), OrtDynamicInt8(),
)


class PeerUnavailable(ValueError):
    """A peer named in --peers cannot run here."""


def parse_peers(text):
    """'auto', 'none' or a comma list of peer libraries -> ('auto'|'none', set)."""
    t = text.strip().lower()
    if t in ("auto", "none"):
        return t, set()
    libs = set()
    for part in filter(None, (p.strip() for p in t.split(","))):
        lib = PEER_ALIASES.get(part, part)
        if lib not in PEER_LIBRARIES:
            raise ValueError(f"unknown peer {part!r}: expected auto, none or a comma list "
                             f"of {', '.join(PEER_LIBRARIES)}")
        libs.add(lib)
    if not libs:
        raise ValueError("expected auto, none or a comma list of peer libraries")
    return "list", libs


def select_systems(formats, peers_mode, peer_libs):
    """(chosen systems, skipped [(system, reason)]) for the requested formats.

    Dense fp32 is always measured: it is the baseline every ratio refers to.
    A peer library named explicitly must be importable (PeerUnavailable otherwise);
    with 'auto' missing peers are skipped and listed.
    """
    formats = set(formats) | {"dense"}
    chosen, skipped = [], []
    for s in ALL_SYSTEMS:
        if s.format not in formats:
            continue
        if s.library != "sparsekit":
            if peers_mode == "none" or (peers_mode == "list" and s.library not in peer_libs):
                continue
        ok, why = s.available()
        if ok:
            chosen.append(s)
        elif s.library != "sparsekit" and peers_mode == "list":
            raise PeerUnavailable(f"{s.library} was requested but {s.name} cannot run: {why}")
        else:
            skipped.append((s, why))
    return chosen, skipped

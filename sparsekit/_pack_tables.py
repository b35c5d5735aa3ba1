"""The measured cost-model tables of sparsekit.pack (data only).

MEASURED: every kernel family on its AVX-512 path (this project's reference
machine); MEASURED_AVX2: every family forced to AVX2. Each is the output of
`sparsekit pack --measure` / `--fit` (sparsekit/_pack_measure.py), pasted
here with the command, the machine and the crossover rows it implies (the
"# {'shape': ...}" lines, which tests/test_pack.py checks against the model).
See sparsekit/pack.py for what the coefficients mean.
"""

# ---- the measured table (output of `sparsekit pack --measure`) --------------
MEASURED = {'coef': {'csr': {1: (0.6852, 0.1345, 1.8069, 0.0, 0.0054, 0.0032),
                  8: (0.872, 0.0, 2.391, 0.0471, 0.0013, 0.0415),
                  32: (0.6447, 0.0, 4.6223, 0.097, 0.2714, 0.054),
                  128: (0.8903, 0.0, 11.2573, 0.0902, 0.7711, 0.2166)},
          'csr_shared': {8: (0.7498, 0.144, 2.4234, 0.222, 0.1946, 0.0157),
                         32: (0.609, 0.0, 6.5386, 0.0875, 0.3528, 0.0419),
                         128: (0.808, 0.0, 18.3199, 0.0627, 0.47, 0.18)},
          'dense': {1: (1.6106, 0.0363, 0.0, 0.0, 0.0064, 0.0),
                    8: (2.0752, 0.0731, 0.0, 0.0727, 0.002, 0.0),
                    32: (1.65, 0.5729, 2.6639, 0.1529, 0.0431, 0.0),
                    128: (1.4608, 2.02, 7.2527, 0.0875, 0.0748, 0.0)},
          'qdense': {1: (2.413, 0.0098, 0.0, 0.0, 0.0, 0.0),
                     8: (2.162, 0.0219, 0.0, 0.0, 0.0, 0.0),
                     32: (2.6842, 0.0786, 0.0, 0.0078, 0.0, 0.0),
                     128: (3.9607, 0.2903, 4.5817, 0.0346, 0.0, 0.0)},
          'sell': {1: (0.6837, 0.0313, 0.2578, 0.0, 0.0302, 0.0),
                   8: (0.6981, 0.1384, 1.0894, 0.0585, 0.0312, 0.0),
                   32: (0.4862, 0.5564, 4.9387, 0.0585, 0.08, 0.0),
                   128: (0.3239, 2.2751, 19.3796, 0.0339, 0.1085, 0.0)},
          'spint8': {1: (1.2472, 0.2036, 0.1889, 1.167, 0.0, 0.0),
                     8: (2.9061, 0.3275, 2.8718, 0.1232, 0.0, 0.0),
                     32: (2.9118, 0.5238, 4.8732, 0.106, 0.0, 0.0),
                     128: (4.2778, 1.9417, 13.224, 0.1117, 0.0, 0.0)},
          'spint8_g4': {128: (3.3434, 2.8037, 18.9378, 0.1336, 0.0, 0.0)},
          'spint8_g4_m1': {1: (1.6482, 0.1842, 0.8316, 0.1864, 0.0, 0.0)}},
 'isa': 'avx512vnni',
 'sell_isa': 'avx512',
 'shared_isa': 'avx512',
 'source': 'measured by `python -m sparsekit.pack --measure` on AMD EPYC (1 thread)'}
# Fitted (`python -m sparsekit.pack --fit run1.json run2.json`) to two runs of
# `python -m sparsekit.pack --measure --reps 15 --save runN.json` on 2026-11-28
# (13:13 and 13:15 UTC, load average 0.5-1 on 2 cores, each ~12 s under the
# benchmark lock), main at 2083962 (after the fp32 M = 1 tail change), 8 shapes x
# 8 sparsities x 2 patterns x M in 1, 8, 32, 128. Checked against a third and
# fourth run with another seed (benchmarks/pack_accuracy.py, results in
# benchmarks/RESULTS.md).
# "sell" (SlicedEllMatrix, spmv_sell_f32 on avx512) was fitted later, alone
# (`--fit all_*.json --formats sell`: the other formats keep the coefficients
# above), to four runs of `--measure --reps 15` timing every format interleaved
# as above (two per half of the shapes, 2026-11-28 15:14-15:15 UTC, load average
# 3-4 on 2 cores from other engineers' jobs, each run 25-35 s under the lock),
# branch sellint; its units are slots (64 per group). Scored on pack_accuracy's
# own runs (seed 1): benchmarks/RESULTS.md, "SlicedEllMatrix in the framework
# layers".
# "csr_shared" (CSRMatrix.with_shared_columns(), spmm_f32 on avx512) was fitted
# later still, alone and relative to the CSRMatrix coefficients above (`--fit
# run1_a.json run1_b.json run2_a.json run2_b.json --formats csr_shared`, see
# _samples: the CSR kernels now run ~10% faster at M >= 32 than the csr rows
# predict, so fitted directly the layout's gain would be over-predicted by as
# much), to two runs per half of the shapes of
# `--measure --reps 15 --formats dense,csr,csr_shared --patterns unstructured
# --ms 8,32,128 --sparsities 0.65,0.7,0.75,0.8,0.82,0.85,0.9,0.95` (2026-11-28
# 16:43 UTC, load average 1.2-1.4 on 2 cores, 6-15 s per run under the lock),
# branch sharedpack; units: nonzeros, samples from SHARED_MIN_DENSITY on.
# Predicted / measured csr-to-csr_shared time ratio: median 1.00 at M = 8, 32,
# 128, 5-95% 0.94-1.08 (M = 8), 0.95-1.05 (M = 32, 128). Scored on
# pack_accuracy's own runs (seed 1): benchmarks/RESULTS.md, "Shared columns in
# sparsekit.pack". The M = 1 and 8 rows of dense, csr and sell were re-fitted
# last (2026-11-29 01:47 UTC, `--measure --reps 31`, quiet machine), after
# dense fp32 became the packed GEMM (gemm_f32) that pack returns: at M = 8 it
# is 2-3x NumPy, and the older rows had pack pick SlicedEllMatrix from 12-14%
# sparsity there; the refit's M >= 32 rows were not taken (benchmarks/RESULTS.md,
# "pack's dense entry after the packed fp32 GEMM"). Lowest sparsity from which
# pack picks the sparse format (csr: CSRMatrix vs dense fp32 where SlicedEllMatrix is no candidate; sell:
# SlicedEllMatrix, M <= SELL_MAX_M on AVX-512, None above; spint8: vs
# QuantizedMatrix, unstructured; spint8_1x4: vs QuantizedMatrix, pruned in 1x4
# blocks); shared: the sparsities at which pack picks CSRMatrix with shared
# columns (AVX-512, M >= SHARED_MIN_M, where the layout is built and at
# density >= SHARED_MIN_DENSITY; at M <= SELL_MAX_M SlicedEllMatrix wins):
# {'shape': '3072x768', 'm': 1, 'csr': 0.71, 'sell': 0.38, 'spint8': 0.81, 'spint8_1x4': 0.82, 'shared': None}
# {'shape': '3072x768', 'm': 8, 'csr': 0.82, 'sell': 0.6, 'spint8': 0.94, 'spint8_1x4': 0.79, 'shared': None}
# {'shape': '3072x768', 'm': 32, 'csr': 0.34, 'sell': None, 'spint8': 0.74, 'spint8_1x4': 0.46, 'shared': (0.66, 0.83)}
# {'shape': '3072x768', 'm': 128, 'csr': 0.34, 'sell': None, 'spint8': 0.62, 'spint8_1x4': 0.44, 'shared': (0.66, 0.83)}
# {'shape': '768x3072', 'm': 1, 'csr': 0.71, 'sell': 0.37, 'spint8': 0.87, 'spint8_1x4': 0.83, 'shared': None}
# {'shape': '768x3072', 'm': 8, 'csr': 0.84, 'sell': 0.59, 'spint8': 0.92, 'spint8_1x4': 0.77, 'shared': None}
# {'shape': '768x3072', 'm': 32, 'csr': 0.36, 'sell': None, 'spint8': 0.73, 'spint8_1x4': 0.45, 'shared': (0.66, 0.83)}
# {'shape': '768x3072', 'm': 128, 'csr': 0.4, 'sell': None, 'spint8': 0.62, 'spint8_1x4': 0.44, 'shared': (0.66, 0.83)}


# ---- the AVX2 table (output of `sparsekit pack --measure` with SPARSEKIT_ISA=avx2) ----
# Fitted (`sparsekit pack --fit` on the 8 files) to two rounds, each of
#   SPARSEKIT_ISA=avx2 OPENBLAS_CORETYPE=Haswell flock /work/wt/bench.lock \
#       python -m sparsekit.pack --measure --reps 15 --shapes <half> [--ms 2,4] --save <f>
# (the 8 shapes in two halves, M in 1, 8, 32, 128 and again in 2, 4; 8
# sparsities x 2 patterns; every format interleaved; OPENBLAS_L2_SIZE unset),
# 2026-11-28 19:17-19:20 UTC, branch avx2pack on main 4033330, load average
# 5.5-6.7 on the 2 cores (other engineers' jobs outside the lock: absolute
# times are the loaded machine's, the two rounds agree within 1.5% median,
# 5-95% of the per-case round-1 / round-2 ratios 0.92-1.13 for dense, 0.95-1.08
# for the others). Predicted / measured median 0.99-1.03 for every format and
# M, 5-95% within 0.86-1.12 except dense at M = 1 (0.63-1.23) and 128
# (0.72-1.22), csr / qdense / sell at M = 128 (0.59-1.12). Scored on
# pack_accuracy's own runs: benchmarks/RESULTS.md, "pack on AVX2".
# Lowest sparsity from which pack picks the sparse format with this table (the
# columns as for MEASURED above; "sell" at M <= SELL_MAX_M_AVX2 only):
#   {'shape': '3072x768', 'm': 1, 'csr': 0.67, 'sell': 0.51, 'spint8': 0.98, 'spint8_1x4': 0.89, 'shared': None}
#   {'shape': '3072x768', 'm': 8, 'csr': 0.45, 'sell': None, 'spint8': 0.93, 'spint8_1x4': 0.75, 'shared': None}
#   {'shape': '3072x768', 'm': 32, 'csr': 0.34, 'sell': None, 'spint8': 0.46, 'spint8_1x4': 0.05, 'shared': None}
#   {'shape': '3072x768', 'm': 128, 'csr': 0.36, 'sell': None, 'spint8': 0.4, 'spint8_1x4': 0.03, 'shared': None}
#   {'shape': '768x3072', 'm': 1, 'csr': 0.67, 'sell': 0.51, 'spint8': 0.97, 'spint8_1x4': 0.88, 'shared': None}
#   {'shape': '768x3072', 'm': 8, 'csr': 0.53, 'sell': None, 'spint8': 0.94, 'spint8_1x4': 0.75, 'shared': None}
#   {'shape': '768x3072', 'm': 32, 'csr': 0.37, 'sell': None, 'spint8': 0.51, 'spint8_1x4': 0.07, 'shared': None}
#   {'shape': '768x3072', 'm': 128, 'csr': 0.42, 'sell': None, 'spint8': 0.45, 'spint8_1x4': 0.05, 'shared': None}
MEASURED_AVX2 = {'coef': {'csr': {1: (0.6496, 0.1335, 1.9168, 0.0, 0.0079, 0.003),
                       2: (0.8636, 0.1865, 0.3716, 0.0, 0.0377, 0.0253),
                       4: (0.9744, 0.0709, 0.614, 0.0186, 0.0503, 0.039),
                       8: (1.0227, 0.0263, 0.9174, 0.1407, 0.0476, 0.0449),
                       32: (0.7085, 0.1521, 5.3225, 0.0909, 0.0632, 0.0726),
                       128: (0.6274, 0.9671, 16.9996, 0.1134, 0.6617, 0.2381)},
               'dense': {1: (1.6394, 0.0342, 0.4032, 0.0, 0.0103, 0.0),
                         2: (1.617, 0.1888, 0.0, 0.4428, 0.0321, 0.0),
                         4: (1.752, 0.1564, 0.5932, 0.0909, 0.0282, 0.0),
                         8: (1.7945, 0.2293, 0.626, 0.0432, 0.0238, 0.0),
                         32: (1.9009, 0.6075, 0.0, 0.0173, 0.0375, 0.0),
                         128: (0.4323, 1.9485, 19.2581, 0.1397, 0.3273, 0.0)},
               'qdense': {1: (2.5497, 0.0187, 0.2075, 0.0, 0.0, 0.0),
                          2: (2.0593, 0.0303, 0.0, 0.0, 0.0, 0.0),
                          4: (2.1593, 0.0599, 0.0, 0.0, 0.0, 0.0),
                          8: (2.3371, 0.1142, 1.3211, 0.0, 0.0, 0.0),
                          32: (3.0486, 0.4312, 8.9931, 0.0456, 0.0, 0.0),
                          128: (6.9056, 1.8224, 20.9266, 0.0, 0.0, 0.0)},
               'sell': {1: (0.7009, 0.0948, 0.2464, 0.1008, 0.0128, 0.0),
                        2: (0.7264, 0.1871, 0.4364, 0.0419, 0.0104, 0.0),
                        4: (0.7566, 0.3726, 0.5984, 0.0403, 0.0273, 0.0),
                        8: (0.7596, 0.7484, 1.0992, 0.0443, 0.0284, 0.0),
                        32: (0.4481, 2.8392, 7.6874, 0.1513, 0.5339, 0.0),
                        128: (1.0439, 11.6671, 14.3456, 0.0734, 5.8562, 0.0)},
               'spint8': {1: (1.4858, 0.5605, 2.8624, 0.4079, 0.0, 0.0),
                          2: (2.7289, 1.7357, 1.9319, 0.4249, 0.0, 0.0),
                          4: (2.7715, 1.7418, 2.1415, 0.3509, 0.0, 0.0),
                          8: (2.7731, 1.7564, 2.8372, 0.3194, 0.0, 0.0),
                          32: (3.0073, 1.8076, 6.3959, 0.2636, 0.0, 0.0),
                          128: (3.9849, 7.4111, 23.7748, 0.2658, 0.0, 0.0)}},
                 'isa': 'avx2',
                 'kernels': {'qgemm_u8s8': 'avx2', 'spmm_f32': 'avx2', 'spmm_u8s8': 'avx2',
                             'spmv_sell_f32': 'avx2'},
                 'sell_isa': 'avx2',
                 'shared_isa': 'avx2',
                 'source': 'measured by `sparsekit pack --measure` with SPARSEKIT_ISA=avx2 '
                           'on AMD EPYC (1 thread)'}

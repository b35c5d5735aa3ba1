"""The measured cost-model tables of sparsekit.pack (data only).

MEASURED: every kernel family on its AVX-512 path (this project's reference
machine); MEASURED_AVX2: every family forced to AVX2. Each is the output of
`sparsekit pack --measure` / `--fit` (sparsekit/_pack_measure.py), pasted
here with the command, the machine and the crossover rows it implies (the
"# {'shape': ...}" lines, which tests/test_pack.py checks against the model).
See sparsekit/pack.py for what the coefficients mean.
"""

# ---- the measured table (output of `sparsekit pack --measure`) --------------
MEASURED = {'coef': {'csr': {1: (0.6612, 0.1395, 1.7236, 0.0, 0.0083, 0.002, 0.003),
                             8: (0.8723, 0.2491, 1.2836, 0.0984, 0.0177, 0.0079, 0.1315),
                             32: (0.7002, 0.2778, 2.9649, 0.1104, 0.0, 0.0148, 0.1353),
                             128: (0.701, 1.0334, 8.1785, 0.1047, 0.0, 0.0692, 0.3885)},
                     'csr_shared': {8: (0.7257, 0.2296, 3.4467, 0.2929, 0.2225, 0.0, 0.0995),
                                    32: (0.6905, 0.1041, 6.1584, 0.0729, 0.045, 0.0243, 0.1165),
                                    128: (0.5543, 0.3238, 21.0697, 0.0679, 0.3053, 0.1149, 0.1108)},
                     'dense': {1: (1.5732, 0.0356, 0.0, 0.0, 0.0054, 0.0),
                               8: (2.0205, 0.0743, 0.0, 0.0311, 0.0008, 0.0),
                               32: (2.0637, 0.2373, 3.55, 0.2836, 0.0029, 0.0),
                               128: (3.0919, 0.9472, 10.5781, 0.261, 0.0214, 0.0)},
                     'qdense': {1: (2.413, 0.0098, 0.0, 0.0, 0.0, 0.0),
                                8: (2.162, 0.0219, 0.0, 0.0, 0.0, 0.0),
                                32: (2.6842, 0.0786, 0.0, 0.0078, 0.0, 0.0),
                                128: (3.9607, 0.2903, 4.5817, 0.0346, 0.0, 0.0)},
                     'sell': {1: (0.6679, 0.0299, 0.3054, 0.0, 0.0268, 0.0),
                              8: (0.7017, 0.1336, 1.0915, 0.0469, 0.0284, 0.0),
                              32: (0.5006, 0.525, 4.9759, 0.0607, 0.048, 0.0),
                              128: (0.349, 2.13, 20.163, 0.0318, 0.115, 0.0)},
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
# sparsekit.pack". All rows of dense, csr, csr_shared and sell were re-fitted
# last (2026-11-29, branch packrefit on main f04da75), with dense fp32 timed
# as pack returns it: the packed GEMM (gemm_f32, PackedDenseMatrix) at every M
# (the M >= 32 rows before were NumPy's, which had pack pick CSRMatrix from
# 34-40% sparsity on the BERT shapes at M >= 32, where the packed GEMM
# measured 1.1-1.4x faster than CSR at 35-45%), and with a 7th coefficient
# for CSRMatrix (per_unit_gap: its cost per nonzero grows with the zeros
# around it in a big weight; without it the M >= 32 fits under-predicted CSR
# on the BERT shapes at 50-90% by 20-35%). M = 1 and 8 (and sell at every M):
# three runs of
#   flock /work/wt/bench.lock python -m sparsekit.pack --measure --reps 15 \
#       --shapes <half> --formats dense,csr,csr_shared,sell --save <f>
# per half of the 8 shapes (05:00-05:02 UTC, load average 2.4-2.7 on the 2
# cores from other engineers' jobs), fitted with `--fit <the 6 files> --formats
# dense,csr,sell` (a case timed in several runs at its median). M = 32 and 128
# of dense, csr and csr_shared: three more runs without SlicedEllMatrix, which
# is no candidate there (05:35-05:36 UTC, load average 3.6-4.0),
#   ... --measure --reps 15 --shapes <half> --ms 32,128 --formats dense,csr,csr_shared
# fitted with `--fit <those 6> --formats dense,csr` (the M = 1 / 8 rows stay)
# and then `--formats csr_shared` (relative to those csr rows, as before):
# timed next to SlicedEllMatrix's large arrays, CSRMatrix ran 5-25% slower on
# the BERT shapes at M >= 32, which moved the crossovers ~0.05 later still.
# Predicted / measured: median 0.99-1.03 for every format and M, 5-95% within
# 0.77-1.14 (csr at M = 32 / 128: 0.78-1.12 / 0.77-1.11; 0.67-1.23 / 0.69-1.19
# without the gap term). Noise: each run's time over the case's median, 5-95%
# 0.95-1.07. The int8 rows are as before. Checked against direct timings on the
# BERT shapes (benchmarks/RESULTS.md, "pack: dense priced with the packed
# GEMM"): on a quiet machine CSR and packed dense cross at ~0.50-0.52 at
# M = 32 / 128, so these rows still pick dense up to 0.04-0.1 too long (CSR
# <= ~1.15x faster there). All these rows were timed one weight back to back
# (`--rotation 1` since branch sellpick, where `--measure` times each weight
# rotating over 8 copies, as a model's layers, by default): on the BERT shapes
# at M = 1 / 8 that keeps dense fp32 warm in L3, so whether SlicedEllMatrix
# should win there from 0.36-0.37 / 0.58-0.59 in a model is open until these
# rows are re-timed on an AVX-512 CPU (benchmarks/RESULTS.md, "SlicedEllMatrix
# at small M: warm vs a model's layers"). Lowest
# sparsity from which
# pack picks the sparse format (csr: CSRMatrix vs dense fp32 where SlicedEllMatrix is no candidate; sell:
# SlicedEllMatrix, M <= SELL_MAX_M on AVX-512, None above; spint8: vs
# QuantizedMatrix, unstructured; spint8_1x4: vs QuantizedMatrix, pruned in 1x4
# blocks); shared: the sparsities at which pack picks CSRMatrix with shared
# columns (AVX-512, M >= SHARED_MIN_M, where the layout is built and at
# density >= SHARED_MIN_DENSITY; at M <= SELL_MAX_M SlicedEllMatrix wins):
# {'shape': '3072x768', 'm': 1, 'csr': 0.73, 'sell': 0.37, 'spint8': 0.81, 'spint8_1x4': 0.82, 'shared': None}
# {'shape': '3072x768', 'm': 8, 'csr': 0.88, 'sell': 0.59, 'spint8': 0.94, 'spint8_1x4': 0.79, 'shared': None}
# {'shape': '3072x768', 'm': 32, 'csr': 0.6, 'sell': None, 'spint8': 0.74, 'spint8_1x4': 0.46, 'shared': (0.66, 0.83)}
# {'shape': '3072x768', 'm': 128, 'csr': 0.54, 'sell': None, 'spint8': 0.62, 'spint8_1x4': 0.44, 'shared': (0.66, 0.83)}
# {'shape': '768x3072', 'm': 1, 'csr': 0.73, 'sell': 0.36, 'spint8': 0.87, 'spint8_1x4': 0.83, 'shared': None}
# {'shape': '768x3072', 'm': 8, 'csr': 0.88, 'sell': 0.58, 'spint8': 0.92, 'spint8_1x4': 0.77, 'shared': None}
# {'shape': '768x3072', 'm': 32, 'csr': 0.61, 'sell': None, 'spint8': 0.73, 'spint8_1x4': 0.45, 'shared': (0.66, 0.83)}
# {'shape': '768x3072', 'm': 128, 'csr': 0.57, 'sell': None, 'spint8': 0.62, 'spint8_1x4': 0.44, 'shared': (0.66, 0.83)}


# ---- the AVX2 table (output of `sparsekit pack --measure` with SPARSEKIT_ISA=avx2) ----
# fp32 M = 1, 2, 4, 8 rows (dense, csr; sell at M = 1, 2, where it is a
# candidate) re-fitted 2026-11-29 07:41-07:59 UTC on branch sellpick, on a
# CPU without AVX-512 (the VM came up as AMD EPYC family 25, Zen 3: AVX2
# only), timed the way a model runs its layers: each format rotating over 8
# copies of its weight (_pack_measure.ROTATION; the rows before, and the M =
# 32 / 128 rows still, timed one weight back to back, warm in L3, on the Zen 5
# VM forced to AVX2). Four rounds of
#   flock /work/wt/bench.lock python -m sparsekit.pack --measure --reps 7 \
#       --ms 1,2,4,8 --formats dense,csr,sell --shapes <half> --save <f>
# (8 files, 10-78 s each, load average 6-26 on the 2 cores from other
# engineers' builds and tests: each run's time over the case's median, 5-95%
# 0.78-1.66), fitted with `--fit <the 8 files> --formats dense,csr,sell`.
# Predicted / measured median 0.94-1.01, 5-95% within 0.67-1.26 (sell
# 0.76-1.10). From memory the packed dense GEMM at M = 1 takes ~1.1-1.3 ms for
# a BERT FFN weight (0.2-0.4 ms warm), so SlicedEllMatrix now wins from
# ~23% sparsity at M = 1 (0.48 before) and CSRMatrix from ~34% at M = 1..8
# (0.66-0.73 before). Scored on pack_accuracy runs timed the same way:
# benchmarks/RESULTS.md, "SlicedEllMatrix at small M: warm vs a model's layers".
# Older: fp32 M = 32 / 128 rows fitted 2026-11-29 05:00-05:04 UTC (branch
# packrefit on main f04da75, the Zen 5 VM with every kernel forced to AVX2)
# with dense fp32 timed as the runtime of a CPU
# without AVX-512 holds it: a PackedDenseMatrix on gemm_f32's AVX2 kernel at
# every M (_dense_f32.wanted(avx2_cpu=True); before, NumPy's OpenBLAS on its
# Haswell kernels), to three rounds of
#   SPARSEKIT_ISA=avx2 flock /work/wt/bench.lock python -m sparsekit.pack \
#       --measure --reps 15 --shapes <half> --ms 1,8,32,128 (and --ms 2,4) \
#       --formats dense,csr,sell --save <f>
# (12 files, 6-40 s each, load average 5.1-6.2 on the 2 cores from other
# engineers' jobs: absolute times are the loaded machine's; each run's time
# over the case's median, 5-95% 0.97-1.04), fitted with `--fit <the 12 files>
# --formats dense,csr,sell` (medians; csr with the gap term, see MEASURED).
# Predicted / measured median 0.99-1.02 for every format and M, 5-95% within
# 0.77-1.13 (csr at M = 32 / 128: 0.80-1.07 / 0.77-1.09, sell at M = 128
# 0.70-1.06, dense at M = 1 0.83-1.13). The int8 rows (qdense, spint8) are
# from the earlier fit: two rounds of
#   SPARSEKIT_ISA=avx2 OPENBLAS_CORETYPE=Haswell flock /work/wt/bench.lock \
#       python -m sparsekit.pack --measure --reps 15 --shapes <half> [--ms 2,4] --save <f>
# (8 sparsities x 2 patterns; every format interleaved), 2026-11-28
# 19:17-19:20 UTC, branch avx2pack on main 4033330, load average 5.5-6.7;
# predicted / measured median 0.99-1.03, qdense at M = 128 down to 0.59.
# Scored on pack_accuracy's own runs: benchmarks/RESULTS.md, "pack on AVX2".
# Lowest sparsity from which pack picks the sparse format with this table (the
# columns as for MEASURED above; "sell" at M <= SELL_MAX_M_AVX2 only):
#   {'shape': '3072x768', 'm': 1, 'csr': 0.34, 'sell': 0.23, 'spint8': 0.98, 'spint8_1x4': 0.89, 'shared': None}
#   {'shape': '3072x768', 'm': 8, 'csr': 0.34, 'sell': None, 'spint8': 0.93, 'spint8_1x4': 0.75, 'shared': None}
#   {'shape': '3072x768', 'm': 32, 'csr': 0.43, 'sell': None, 'spint8': 0.46, 'spint8_1x4': 0.05, 'shared': None}
#   {'shape': '3072x768', 'm': 128, 'csr': 0.41, 'sell': None, 'spint8': 0.4, 'spint8_1x4': 0.05, 'shared': None}
#   {'shape': '768x3072', 'm': 1, 'csr': 0.34, 'sell': 0.22, 'spint8': 0.97, 'spint8_1x4': 0.88, 'shared': None}
#   {'shape': '768x3072', 'm': 8, 'csr': 0.34, 'sell': None, 'spint8': 0.94, 'spint8_1x4': 0.75, 'shared': None}
#   {'shape': '768x3072', 'm': 32, 'csr': 0.46, 'sell': None, 'spint8': 0.51, 'spint8_1x4': 0.07, 'shared': None}
#   {'shape': '768x3072', 'm': 128, 'csr': 0.45, 'sell': None, 'spint8': 0.45, 'spint8_1x4': 0.05, 'shared': None}
MEASURED_AVX2 = {'coef': {'csr': {1: (1.0, 0.2769, 5.1234, 1.6404, 0.1883, 0.0036),
                                  2: (1.2327, 0.5498, 3.0931, 1.5565, 0.315, 0.0058),
                                  4: (1.1649, 0.4687, 4.2515, 1.1693, 0.309, 0.0142, 0.0164),
                                  8: (1.1126, 0.5729, 3.2831, 1.0557, 0.3368, 0.0, 0.0515),
                                  32: (0.706, 0.3931, 4.5053, 0.1011, 0.0785, 0.0388, 0.0113),
                                  128: (0.8921, 1.5746, 14.5032, 0.0949, 0.2884, 0.1538, 0.1373)},
                          'dense': {1: (2.7392, 0.1399, 0.0, 0.4031, 0.1407, 0.0),
                                    2: (2.9313, 0.1702, 0.0, 0.1088, 0.141, 0.0),
                                    4: (3.1157, 0.1801, 0.0, 0.0, 0.1817, 0.0),
                                    8: (3.0685, 0.2557, 0.0, 0.2845, 0.2812, 0.0),
                                    32: (1.9648, 0.5109, 0.2569, 0.2285, 0.0021, 0.0),
                                    128: (2.2045, 1.9666, 2.9585, 0.2512, 0.074, 0.0)},
                          'qdense': {1: (2.5497, 0.0187, 0.2075, 0.0, 0.0, 0.0),
                                     2: (2.0593, 0.0303, 0.0, 0.0, 0.0, 0.0),
                                     4: (2.1593, 0.0599, 0.0, 0.0, 0.0, 0.0),
                                     8: (2.3371, 0.1142, 1.3211, 0.0, 0.0, 0.0),
                                     32: (3.0486, 0.4312, 8.9931, 0.0456, 0.0, 0.0),
                                     128: (6.9056, 1.8224, 20.9266, 0.0, 0.0, 0.0)},
                          'sell': {1: (1.2821, 0.3033, 0.4445, 0.6967, 0.0884, 0.0),
                                   2: (1.2783, 0.5565, 1.6021, 0.641, 0.2015, 0.0),
                                   4: (0.7395, 0.3687, 0.666, 0.0832, 0.0119, 0.0),
                                   8: (0.79, 0.7404, 1.0705, 0.026, 0.0099, 0.0),
                                   32: (0.6707, 2.927, 5.7263, 0.0582, 0.0877, 0.0),
                                   128: (1.5923, 12.0727, 7.2974, 0.0, 1.2903, 0.0)},
                          'spint8': {1: (1.4858, 0.5605, 2.8624, 0.4079, 0.0, 0.0),
                                     2: (2.7289, 1.7357, 1.9319, 0.4249, 0.0, 0.0),
                                     4: (2.7715, 1.7418, 2.1415, 0.3509, 0.0, 0.0),
                                     8: (2.7731, 1.7564, 2.8372, 0.3194, 0.0, 0.0),
                                     32: (3.0073, 1.8076, 6.3959, 0.2636, 0.0, 0.0),
                                     128: (3.9849, 7.4111, 23.7748, 0.2658, 0.0, 0.0)}},
                 'isa': 'avx2',
                 'kernels': {'qgemm_u8s8': 'avx2',
                             'spmm_f32': 'avx2',
                             'spmm_u8s8': 'avx2',
                             'spmv_sell_f32': 'avx2'},
                 'sell_isa': 'avx2',
                 'shared_isa': 'avx2',
                 'source': 'measured by `sparsekit pack --measure` with SPARSEKIT_ISA=avx2 on AMD '
                           'EPYC (1 thread)'}

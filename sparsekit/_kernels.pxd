# Declarations of the C core (kernels/include/sparsekit.h) for Cython.
from libc.stdint cimport int64_t, int32_t, uint8_t, int8_t, uint16_t, uint32_t

cdef extern from "sparsekit.h" nogil:
    ctypedef int sk_isa
    ctypedef int sk_activation
    int SK_OK, SK_ERR_ARGUMENT, SK_ERR_UNSUPPORTED, SK_ERR_NOMEM, SK_ERR_FORMAT
    int SK_ISA_COUNT
    const char *SK_VERSION_STRING

    const char *sk_isa_name(sk_isa isa)
    int sk_cpu_supports(sk_isa isa)
    sk_isa sk_best_isa()
    int sk_set_isa(sk_isa isa)
    sk_isa sk_get_isa()
    int sk_family_isa(const char *family)
    void sk_set_num_threads(int n)
    int sk_get_num_threads()
    void sk_set_thread_backoff(int on)
    int sk_get_thread_backoff()
    ctypedef struct sk_thread_backoff_info:
        int enabled, active
        double window_s, last_late_us, since_last_late_s
    void sk_thread_backoff_state(sk_thread_backoff_info *s)

    ctypedef struct sk_csr_f32:
        int64_t n, k
        const int64_t *indptr
        const void *indices
        int index_bytes
        const float *values

    int sk_csr_f32_validate(const sk_csr_f32 *w, int64_t *bad_row)
    int sk_linear_csr_f32(const sk_csr_f32 *w, int64_t m, const float *x, int64_t ldx,
                          const float *bias, sk_activation act, float *y, int64_t ldy)
    ctypedef struct sk_csr_f32_shared:
        pass
    sk_csr_f32_shared *sk_csr_f32_shared_build(const sk_csr_f32 *w, int force)
    void sk_csr_f32_shared_free(sk_csr_f32_shared *s)
    int64_t sk_csr_f32_shared_nbytes(const sk_csr_f32_shared *s)
    int sk_linear_csr_f32_shared(const sk_csr_f32 *w, const sk_csr_f32_shared *s, int64_t m,
                                 const float *x, int64_t ldx, const float *bias,
                                 sk_activation act, float *y, int64_t ldy)

    # ---- fp32 sliced ELL with 32-column windows (spmv_sell_f32) ----
    ctypedef struct sk_sell_f32:
        int64_t n, k
        const int64_t *group_ptr
        const uint32_t *window
        const uint32_t *index
        const float *values

    int64_t sk_sell_f32_count_groups(const sk_csr_f32 *w)
    int sk_sell_f32_from_csr(const sk_csr_f32 *w, int64_t *group_ptr, uint32_t *window,
                             uint32_t *index, float *values)
    int sk_sell_f32_validate(const sk_sell_f32 *w, int64_t *bad_group)
    int sk_linear_sell_f32(const sk_sell_f32 *w, int64_t m, const float *x, int64_t ldx,
                           const float *bias, sk_activation act, float *y, int64_t ldy)

    # ---- dense fp32 GEMM with a packed weight (gemm_f32) ----
    int64_t sk_gemm_f32_packed_floats(int64_t n, int64_t k)
    int sk_gemm_f32_pack(int64_t n, int64_t k, const float *w, int64_t ldw, float *packed)
    int sk_linear_gemm_f32(int64_t n, int64_t k, const float *packed, int64_t m,
                           const float *x, int64_t ldx, const float *bias, sk_activation act,
                           float *y, int64_t ldy)

    # ---- u8 activation quantization and the int8 GEMM (qgemm_u8s8) ----
    int SK_ERR_NONFINITE
    int sk_quantize_rows_u8(int64_t m, int64_t k, const float *x, int64_t ldx, uint8_t *xq,
                            int64_t ldq, float *scale, int32_t *zero_point)
    int sk_quantize_u8(int64_t m, int64_t k, const float *x, int64_t ldx, float scale,
                       int32_t zero_point, uint8_t *xq, int64_t ldq)

    int SK_QGEMM_MAX_K
    ctypedef struct sk_qmatrix_s8:
        int64_t n, k
        const int8_t *packed
        const uint8_t *sum24
        const float *scale
        int per_channel

    int64_t sk_qmatrix_s8_packed_bytes(int64_t n, int64_t k)
    int sk_qmatrix_s8_pack(int64_t n, int64_t k, const int8_t *q, int64_t ldq, int8_t *packed,
                           uint8_t *sum24)
    int sk_qgemm_u8s8_s32(const sk_qmatrix_s8 *w, int64_t m, const uint8_t *a, int64_t lda,
                          const int32_t *a_zp, int64_t zp_stride, int32_t *c, int64_t ldc)
    int sk_qgemm_u8s8_f32(const sk_qmatrix_s8 *w, int64_t m, const uint8_t *a, int64_t lda,
                          const int32_t *a_zp, int64_t zp_stride, const float *a_scale,
                          int64_t scale_stride, const float *bias, sk_activation act,
                          float *y, int64_t ldy)
    int sk_qgemm_u8s8_u8(const sk_qmatrix_s8 *w, int64_t m, const uint8_t *a, int64_t lda,
                         const int32_t *a_zp, int64_t zp_stride, const float *a_scale,
                         int64_t scale_stride, const float *bias, sk_activation act,
                         float out_scale, int32_t out_zp, uint8_t *yq, int64_t ldyq)
    void sk_gelu_f32(float *y, int64_t n)
    ctypedef struct sk_attention_f32_args:
        const float *q
        const float *k
        const float *v
        const float *mask
        float *out
        int64_t q_stride[3]
        int64_t k_stride[3]
        int64_t v_stride[3]
        int64_t out_stride[3]
        int64_t mask_stride[2]
        const int64_t *seq_offsets
    int sk_add_layernorm_f32(int64_t m, int64_t n, float *y, int64_t ldy, const float *r,
                             int64_t ldr, const float *gamma, const float *beta, float eps)
    int sk_add_layernorm_f32_to(int64_t m, int64_t n, const float *a, int64_t lda,
                                const float *r, int64_t ldr, const float *gamma,
                                const float *beta, float eps, float *y, int64_t ldy)
    int sk_attention_f32(int64_t nb, int64_t nh, int64_t tq, int64_t tk, int64_t d, float scale,
                         const sk_attention_f32_args *args)
    int sk_linear_qgemm_u8s8(const sk_qmatrix_s8 *w, int64_t m, const float *x, int64_t ldx,
                             float x_scale, int32_t x_zp, const float *bias, sk_activation act,
                             float *y, int64_t ldy)

cdef extern from "../kernels/src/internal.h" nogil:
    int sk_qgemm_u8s8_peak_loop(int64_t iters, int64_t *sink)

    # sparse int8 (1x4 blocks), kernels/src/spmm_u8s8
    ctypedef struct sk_bsr_s8_1x4:
        int64_t n, k
        const int64_t *indptr
        const void *cols
        int index_bytes
        const int8_t *values
        const int32_t *row_sums

    int sk_bsr_s8_1x4_validate(const sk_bsr_s8_1x4 *w, int64_t *bad_row)
    int sk_spmm_u8s8_s32(const sk_bsr_s8_1x4 *w, int64_t m, const uint8_t *xq, int64_t ldx,
                         const int32_t *zero_point, int zp_per_row, int32_t *y, int64_t ldy)
    int sk_linear_u8s8_bsr_f32(const sk_bsr_s8_1x4 *w, const float *wscale, int64_t m,
                               const float *x, int64_t ldx, const float *bias,
                               sk_activation act, float *y, int64_t ldy)
    int sk_linear_u8s8_bsr_f32_static(const sk_bsr_s8_1x4 *w, const float *wscale, int64_t m,
                                      const float *x, int64_t ldx, float x_scale, int32_t x_zp,
                                      const float *bias, sk_activation act, float *y,
                                      int64_t ldy)

    # sparse int8, groups of 4 nonzeros at any k (unstructured weights)
    ctypedef struct sk_csr_s8_g4:
        int64_t n, k
        const int64_t *indptr
        const uint16_t *kidx
        const int8_t *values
        const int32_t *row_sums

    int sk_spmm_u8s8_g4_s32(const sk_csr_s8_g4 *w, int64_t m, const uint8_t *xq, int64_t ldx,
                            const int32_t *zero_point, int zp_per_row, int32_t *y, int64_t ldy)
    int sk_linear_u8s8_g4_f32(const sk_csr_s8_g4 *w, const float *wscale, int64_t m,
                              const float *x, int64_t ldx, const float *bias,
                              sk_activation act, float *y, int64_t ldy)
    int sk_linear_u8s8_g4_f32_static(const sk_csr_s8_g4 *w, const float *wscale, int64_t m,
                                     const float *x, int64_t ldx, float x_scale, int32_t x_zp,
                                     const float *bias, sk_activation act, float *y,
                                     int64_t ldy)
    int sk_spmv_u8s8_g4_fast(int64_t k)
    int sk_g4_small_fast()
    int sk_g4_vbmi_cpu()
    int sk_g4_rows_fast(int64_t m, int64_t n, int64_t k, int64_t ngroups)

/* layernorm_f32/avx2.c - impl.h compiled with the avx2 flags (see impl.h). */
#define SK_LAYERNORM_NAME sk_add_layernorm_f32__avx2
#define SK_LAYERNORM_TO_NAME sk_add_layernorm_f32_to__avx2
#include "impl.h"

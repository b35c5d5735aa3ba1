/* layernorm_f32/avx512.c - impl.h compiled with the avx512 flags (see impl.h). */
#define SK_LAYERNORM_NAME sk_add_layernorm_f32__avx512
#define SK_LAYERNORM_TO_NAME sk_add_layernorm_f32_to__avx512
#include "impl.h"

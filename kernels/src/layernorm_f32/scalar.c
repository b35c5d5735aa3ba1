/* layernorm_f32/scalar.c - impl.h compiled with the scalar flags (see impl.h). */
#define SK_LAYERNORM_NAME sk_add_layernorm_f32__scalar
#define SK_LAYERNORM_TO_NAME sk_add_layernorm_f32_to__scalar
#include "impl.h"

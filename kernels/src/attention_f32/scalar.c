/* attention_f32/scalar.c - impl.h compiled with the scalar flags (see impl.h). */
#define SK_ATTENTION_NAME sk_attention_f32__scalar
#include "impl.h"

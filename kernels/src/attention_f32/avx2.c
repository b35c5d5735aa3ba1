/* attention_f32/avx2.c - impl.h compiled with the avx2 flags (see impl.h). */
#define SK_ATTENTION_NAME sk_attention_f32__avx2
#include "impl.h"

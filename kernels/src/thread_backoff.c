/*
 * thread_backoff.c - run on one thread for a while when the other cores are
 * busy.
 *
 * A multi-threaded kernel call ends at its OpenMP region's barrier, so it
 * lasts as long as its latest thread. When another process holds the other
 * core(s), a worker thread gets a core only after a scheduler time slice
 * (milliseconds), and a 2-thread call that takes 0.5 ms alone takes 7 ms.
 * Every parallel region therefore notes the time before it forks
 * (sk_region_begin) and each worker checks in as its first statement
 * (sk_worker_check_in). Two workers in a row that start more than
 * SK_LATE_START_NS after their fork mark the machine busy: for a backoff
 * window sk_threads_for_work returns 1. After the window, calls probe with
 * the requested threads; a late probe doubles the window (up to
 * SK_BACKOFF_MAX_NS), an on-time start resets it. On a quiet machine workers
 * start within microseconds and nothing changes. Results do not depend on
 * it: every kernel returns bit-identical results for any thread count.
 *
 * State is a handful of atomics: kernels are called from many threads.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdatomic.h>
#include <time.h>

#include "internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Worker start delays of 2-thread regions on the 2-core target
 * (benchmarks/RESULTS.md, "2 threads on a busy machine"): quiet, the
 * spinning worker starts in 0.1-0.3 us (p99 < 5 us, worst 63 us back to
 * back); with a busy-looping process on the other core a late worker waits a
 * time slice, 3-8 ms. 0.5 ms sits between the two. */
#define SK_LATE_START_NS 500000LL
#define SK_LATE_STREAK 2 /* late starts in a row that open a window */
#define SK_BACKOFF_MIN_NS 250000000LL  /* first window: 0.25 s */
#define SK_BACKOFF_MAX_NS 2000000000LL /* doubling stops at 2 s */

static atomic_int enabled = 1;
static atomic_int streak = 0;          /* late starts in a row */
static _Atomic int64_t busy_until = 0; /* clock value; 0: not backing off */
static _Atomic int64_t window = 0;     /* current window; 0: no late start since reset */
static _Atomic int64_t last_late = 0;  /* delay of the last late start, ns */
static _Atomic int64_t last_late_at = 0;
#ifdef SK_TEST_HOOKS
static _Atomic int64_t clock_offset = 0; /* test hook: moves the clock forward */
#endif

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t t = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
#ifdef SK_TEST_HOOKS
  t += atomic_load(&clock_offset);
#endif
  return t;
}

void sk_set_thread_backoff(int on) {
  atomic_store(&enabled, on != 0);
  if (!on) {
    atomic_store(&streak, 0);
    atomic_store(&busy_until, 0);
    atomic_store(&window, 0);
  }
}

int sk_get_thread_backoff(void) { return atomic_load(&enabled); }

void sk_thread_backoff_state(sk_thread_backoff_info *s) {
  if (s == NULL) return;
  const int64_t until = atomic_load(&busy_until);
  s->enabled = atomic_load(&enabled);
  s->active = s->enabled && until != 0 && now_ns() < until;
  s->window_s = (double)atomic_load(&window) * 1e-9;
  s->last_late_us = (double)atomic_load(&last_late) * 1e-3;
  const int64_t at = atomic_load(&last_late_at);
  s->since_last_late_s = at ? (double)(now_ns() - at) * 1e-9 : -1.0;
}

int sk_backoff_threads(int n) {
  if (n <= 1 || !atomic_load_explicit(&enabled, memory_order_relaxed)) return n;
  const int64_t until = atomic_load_explicit(&busy_until, memory_order_relaxed);
  if (until == 0) return n; /* quiet: the common case, one load */
  /* After the window calls probe with n threads until a worker checks in
   * (a query that runs no region, like spmm_u8s8's, must not use a probe up) */
  return now_ns() < until ? 1 : n;
}

/* A worker of the region entered at `stamp` started at `t`. An on-time start
 * resets the streak and the window unless a worker of this or a later region
 * was late. */
static void record_start(int64_t stamp, int64_t t) {
  if (!atomic_load_explicit(&enabled, memory_order_relaxed)) return;
  if (t - stamp <= SK_LATE_START_NS) {
    if ((atomic_load_explicit(&streak, memory_order_relaxed) != 0 ||
         atomic_load_explicit(&window, memory_order_relaxed) != 0) &&
        atomic_load(&last_late_at) < stamp) { /* skip the writes when quiet */
      atomic_store(&streak, 0);
      atomic_store(&window, 0);
      atomic_store(&busy_until, 0);
    }
    return;
  }
  atomic_store(&last_late, t - stamp);
  atomic_store(&last_late_at, t);
  /* one late start alone is a passing preemption (another process woke up
   * for a moment): it costs that call a time slice, a window would cost the
   * next 0.25 s their second thread. A second one in a row, or a late probe,
   * means the other core stays busy. */
  if (atomic_fetch_add(&streak, 1) + 1 < SK_LATE_STREAK && atomic_load(&window) == 0) return;
  int64_t w = atomic_load(&window), next;
  do {
    next = w == 0 ? SK_BACKOFF_MIN_NS : (2 * w > SK_BACKOFF_MAX_NS ? SK_BACKOFF_MAX_NS : 2 * w);
  } while (!atomic_compare_exchange_weak(&window, &w, next));
  atomic_store(&busy_until, t + next);
}

int64_t sk_region_begin(int nt) {
  if (nt <= 1 || !atomic_load_explicit(&enabled, memory_order_relaxed)) return 0;
  return now_ns();
}

void sk_worker_check_in(int64_t stamp) {
#ifdef _OPENMP
  if (stamp == 0 || omp_get_thread_num() == 0) return;
  record_start(stamp, now_ns());
#else
  (void)stamp;
#endif
}

#ifdef SK_TEST_HOOKS
void sk_backoff_simulate_start(int64_t delay_ns) {
  const int64_t t = now_ns();
  record_start(t - delay_ns, t);
}

void sk_backoff_advance_clock(int64_t ns) { atomic_fetch_add(&clock_offset, ns); }
#endif

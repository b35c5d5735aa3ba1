/* test_thread_backoff.c - the thread backoff policy (thread_backoff.c): two
 * simulated late worker starts in a row make sk_threads_for_work return 1 for
 * the window, the window doubles up to its cap on late probes, an on-time start
 * resets it, and turning the backoff off restores the thread count. The
 * clock is moved with a test hook, never slept on. */
#define SK_TEST_THREAD_BACKOFF 1
#include "internal.h"
#include "test_util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MS 1000000LL /* ns */
#define BIG_WORK 1e9 /* enough multiply-adds for every thread */

static sk_thread_backoff_info state(void) {
  sk_thread_backoff_info s;
  sk_thread_backoff_state(&s);
  return s;
}

/* A worker start `delay` ns late in a region 1 ms after the previous one. */
static void start(int64_t delay) {
  sk_backoff_advance_clock(MS);
  sk_backoff_simulate_start(delay);
}

/* Moves past the current window (and one more ms). */
static void expire(void) { sk_backoff_advance_clock((int64_t)(state().window_s * 1e9) + MS); }

int main(void) {
  sk_set_num_threads(4);
  const int want = sk_get_num_threads();
  CHECK(want == 4, "set_num_threads(4) gave %d", want);
  CHECK(sk_get_thread_backoff() == 1, "backoff is on by default");
  CHECK(!state().active && state().last_late_us == 0.0 && state().since_last_late_s < 0,
        "fresh state is quiet");

  /* on time: nothing changes */
  start(20000); /* 20 us */
  CHECK(sk_threads_for_work(BIG_WORK) == want, "on-time start changed the thread count");
  CHECK(sk_threads_for_work(1000.0) == 1, "small work still runs on one thread");

  /* one late start is a passing preemption: nothing changes */
  start(3 * MS);
  sk_thread_backoff_info s = state();
  CHECK(!s.active && s.window_s == 0.0, "one late start opened a window");
  CHECK(s.last_late_us > 2999.0 && s.last_late_us < 3001.0, "last late %g us", s.last_late_us);
  CHECK(s.since_last_late_s >= 0.0, "last late start has no time");
  CHECK(sk_threads_for_work(BIG_WORK) == want, "one late start changed the thread count");
  start(20000); /* an on-time start breaks the streak */
  start(3 * MS);
  CHECK(!state().active, "late starts not in a row opened a window");

  /* two in a row: one thread for the first window (0.25 s), then a probe */
  start(4 * MS);
  s = state();
  CHECK(s.active && s.window_s > 0.24 && s.window_s < 0.26, "late starts: window %g s", s.window_s);
  CHECK(s.last_late_us > 3999.0 && s.last_late_us < 4001.0, "last late %g us", s.last_late_us);
  CHECK(sk_threads_for_work(BIG_WORK) == 1, "inside the window: not 1 thread");
  sk_backoff_advance_clock(200 * MS);
  CHECK(sk_threads_for_work(BIG_WORK) == 1, "200 ms into the window: not 1 thread");
  sk_backoff_advance_clock(60 * MS);
  CHECK(!state().active, "window over but still active");
  CHECK(sk_threads_for_work(BIG_WORK) == want, "after the window: no probe with all threads");
  CHECK(sk_threads_for_work(BIG_WORK) == want, "probing calls use all threads until a check-in");

  /* late probes double the window up to 2 s */
  const double windows[] = {0.5, 1.0, 2.0, 2.0};
  for (int i = 0; i < 4; ++i) {
    start(2 * MS);
    s = state();
    CHECK(s.window_s > windows[i] - 0.01 && s.window_s < windows[i] + 0.01,
          "late probe %d: window %g s, expected %g", i, s.window_s, windows[i]);
    CHECK(sk_threads_for_work(BIG_WORK) == 1, "late probe %d: not 1 thread", i);
    expire();
    CHECK(sk_threads_for_work(BIG_WORK) == want, "after window %d: no probe", i);
  }

  /* an on-time probe resets: two late starts back off for 0.25 s again */
  start(10000);
  s = state();
  CHECK(!s.active && s.window_s == 0.0, "on-time probe did not reset (window %g)", s.window_s);
  CHECK(s.last_late_us > 1999.0 && s.last_late_us < 2001.0, "reset forgot the last late start");
  CHECK(sk_threads_for_work(BIG_WORK) == want, "after reset: thread count changed");
  start(MS);
  CHECK(!state().active, "after reset: one late start opened a window");
  start(MS);
  s = state();
  CHECK(s.active && s.window_s > 0.24 && s.window_s < 0.26, "after reset: window %g", s.window_s);

  /* a region: a stamp from before the fork, a worker checking in */
  start(0);
  CHECK(sk_threads_for_work(BIG_WORK) == want, "on-time start did not reset");
  CHECK(sk_region_begin(1) == 0, "a one-thread region takes no stamp");
  sk_worker_check_in(0); /* no stamp: nothing recorded */
  sk_worker_check_in(sk_region_begin(2)); /* this thread is no worker: nothing either */
  CHECK(!state().active, "a check-in outside a worker changed the state");

#ifdef _OPENMP
  /* a real worker checking in 5 ms after a stamp, the second late in a row */
  start(5 * MS);
  const int64_t stamp = sk_region_begin(2) - 5 * MS;
  int team = 0;
#pragma omp parallel num_threads(2)
  {
    sk_worker_check_in(stamp);
#pragma omp single
    team = omp_get_num_threads();
  }
  if (team == 2) {
    CHECK(state().active && state().last_late_us > 4999.0, "late worker not recorded");
    CHECK(sk_threads_for_work(BIG_WORK) == 1, "late worker: not 1 thread");
  }
#endif

  /* off: the thread count is back at once, and late starts are ignored */
  start(5 * MS);
  start(5 * MS);
  CHECK(sk_threads_for_work(BIG_WORK) == 1, "late start: not 1 thread");
  sk_set_thread_backoff(0);
  CHECK(sk_get_thread_backoff() == 0 && !state().active && !state().enabled, "off: still active");
  CHECK(sk_threads_for_work(BIG_WORK) == want, "off: thread count not restored");
  start(5 * MS);
  start(5 * MS);
  CHECK(sk_threads_for_work(BIG_WORK) == want, "off: late starts changed the thread count");
  sk_set_thread_backoff(1);
  CHECK(sk_threads_for_work(BIG_WORK) == want, "back on: stale state applied");

  sk_set_num_threads(1); /* one thread: nothing to back off from */
  start(5 * MS);
  start(5 * MS);
  CHECK(sk_threads_for_work(BIG_WORK) == 1, "1 thread asked, got more");
  CHECK(sk_region_begin(1) == 0, "a one-thread region takes no stamp");
  return sk_test_finish("test_thread_backoff");
}

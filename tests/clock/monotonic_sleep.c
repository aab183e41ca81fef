/* Loaded before libfaketime for `make test`'s shifted-clock run (see the Makefile).
 *
 * libfaketime 0.9.10 (Debian 12) with FAKETIME_DONT_FAKE_MONOTONIC=1 still shifts the
 * absolute deadline of clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ...) by the fake offset,
 * so the kernel gets a negative time and answers EINVAL (libfaketime issue #426, fixed
 * upstream after 0.9.10). Python 3.11's time.sleep() makes exactly that call, so every sleep
 * under faketime raised OSError. The monotonic clock is not faked in that run, so a monotonic
 * sleep goes straight to the kernel here; every other clock still goes through libfaketime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *request, struct timespec *remain)
{
    if (clock_id == CLOCK_MONOTONIC || clock_id == CLOCK_BOOTTIME) {
        /* glibc's clock_nanosleep returns the error number instead of setting errno */
        long rc = syscall(SYS_clock_nanosleep, clock_id, flags, request, remain);
        return rc == 0 ? 0 : errno;
    }
    static clock_nanosleep_fn next;
    if (!next)
        next = (clock_nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clock_id, flags, request, remain);
}

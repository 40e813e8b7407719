/*
 * sleep.c - a guest that blocks inside a host call.
 *
 * Sleeps for argv[1] milliseconds (default 10000) with nanosleep(), which
 * wasi-libc turns into a single WASI poll_oneoff() clock subscription, then
 * prints "slept". The guest burns no CPU while waiting, so this is what a
 * host's wall-clock timeout (not fuel or an instruction budget) must stop.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep() under -std=c11 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    long ms = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    if (ms < 0)
        ms = 0;

    struct timespec req = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    struct timespec rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;

    printf("slept\n");
    return 0;
}

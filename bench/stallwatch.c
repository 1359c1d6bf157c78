/* Watches the machine itself: one thread per online CPU, pinned to it, sleeps 1 ms at a time
 * and reports each wake-up that came more than THRESHOLD late. At real-time priority (root)
 * no ordinary task can hold such a thread back, so a late wake-up is time the CPU ran nothing
 * of this system's: on a virtual machine, its host took the virtual CPU away. A contender's
 * run that overlaps such a stall lost that time to the machine, not to its own work.
 * Usage: stallwatch [THRESHOLD_US]   (default 3000)
 * Prints "prio fifo|normal" once, then "stall CPU START_NS END_NS" per stall on
 * CLOCK_MONOTONIC (the clock of build/bench/measure's fork_ns), flushed at once. Ends when
 * its stdin closes: the caller's end, however it ends. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long threshold_ns = 3000000;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *watch(void *arg)
{
    int cpu = (int)(long)arg;
    const struct timespec nap = {0, 1000000};
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
        return NULL; /* not allowed on this CPU: it stays unwatched */
    for (long long prev = now_ns();;) {
        nanosleep(&nap, NULL);
        long long t = now_ns();
        if (t - prev - nap.tv_nsec > threshold_ns) {
            pthread_mutex_lock(&out_lock);
            printf("stall %d %lld %lld\n", cpu, prev, t);
            fflush(stdout);
            pthread_mutex_unlock(&out_lock);
        }
        prev = t;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct sched_param sp = {.sched_priority = 1};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    char buf[64];

    if (argc > 1)
        threshold_ns = atoll(argv[1]) * 1000LL;
    /* Threads inherit the policy: set before creating them. */
    int fifo = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
    printf("prio %s\n", fifo ? "fifo" : "normal");
    fflush(stdout);
    for (long i = 0; i < ncpu; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, watch, (void *)i) != 0)
            return 1;
    }
    while (read(0, buf, sizeof(buf)) > 0)
        ;
    return 0;
}

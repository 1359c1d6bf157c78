/* Watches the machine itself: one thread per online CPU, pinned to it, sleeps 1 ms at a time
 * and reports each wake-up that came more than THRESHOLD late. At real-time priority (root)
 * no ordinary task can hold such a thread back, so a late wake-up is time the CPU ran nothing
 * of this system's: on a virtual machine, its host took the virtual CPU away. A contender's
 * run that overlaps such a stall lost that time to the machine, not to its own work.
 * With --awake it also keeps every CPU from going idle: a virtual CPU that halts is woken by
 * its host, here up to 125 ms late (a 1 ms sleeper, 15 s at a time, 7 times each way: late by
 * more than 5 ms 0-14 times, worst 3-125 ms; with the CPUs kept busy 0-1 times, worst 2-5 ms).
 * A CPU of real hardware wakes in microseconds. The spinners run at SCHED_IDLE with a pause
 * instruction: any other task that wakes takes their CPU at once.
 * Usage: stallwatch [--awake] [THRESHOLD_US]   (default 3000)
 * Prints "prio fifo|normal awake 0|1" once, then "stall CPU START_NS END_NS" per stall on
 * CLOCK_MONOTONIC (the clock of build/bench/measure's fork_ns), flushed at once. Ends when
 * its stdin closes: the caller's end, however it ends. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long threshold_ns = 3000000;
static int awake;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int pin(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *spin(void *arg)
{
    struct sched_param none = {.sched_priority = 0};

    if (pin((int)(long)arg) != 0 || pthread_setschedparam(pthread_self(), SCHED_IDLE, &none) != 0)
        return NULL;
    for (;;) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause(); /* leaves a sibling hardware thread its share */
#else
        __asm__ volatile("" ::: "memory");
#endif
    }
    return NULL;
}

static void *watch(void *arg)
{
    int cpu = (int)(long)arg;
    const struct timespec nap = {0, 1000000};

    if (pin(cpu) != 0)
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
    int i = 1;

    if (i < argc && strcmp(argv[i], "--awake") == 0) {
        awake = 1;
        i++;
    }
    if (i < argc)
        threshold_ns = atoll(argv[i]) * 1000LL;
    /* Threads inherit the policy: set before creating them (the spinners drop to idle). */
    int fifo = sched_setscheduler(0, SCHED_FIFO, &sp) == 0;
    printf("prio %s awake %d\n", fifo ? "fifo" : "normal", awake); /* before any stall line */
    fflush(stdout);
    for (long c = 0; c < ncpu; c++) {
        pthread_t t;
        if (pthread_create(&t, NULL, watch, (void *)c) != 0 ||
            (awake && pthread_create(&t, NULL, spin, (void *)c) != 0))
            return 1;
    }
    while (read(0, buf, sizeof(buf)) > 0)
        ;
    return 0;
}

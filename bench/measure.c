/* Runs one command and reports what it cost: wall time from fork to reap, user and system CPU,
 * and peak RSS from wait4(). It exists because the kernel folds the RSS a process had before
 * exec() into ru_maxrss: a child forked (or vforked) by a 30 MB Python would report 30 MB.
 * Forked from this small program instead, the floor is about 1 MB.
 * Usage: measure TIMEOUT_S STDIN STDOUT STDERR PROGRAM [ARG...]
 * Prints "rc=N wall_ns=N utime_us=N stime_us=N maxrss_kb=N timed_out=0|1 fork_ns=N" on
 * stdout; rc is the exit status, or 128+signal; fork_ns is CLOCK_MONOTONIC at the fork, so a
 * caller timing the command's output on that clock starts where wall does, not at its own
 * spawn of this program. Exit status 0 unless measuring itself failed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t timed_out;
static pid_t child = -1;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    if (child > 0)
        kill(child, SIGKILL);
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int open_to(const char *path, int flags, int target)
{
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (dup2(fd, target) < 0)
        return -1;
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {0};
    struct rusage ru;
    long long t0, t1;
    long timeout_s;
    int status = 0, rc;
    pid_t got;

    if (argc < 6) {
        fprintf(stderr, "usage: measure TIMEOUT_S STDIN STDOUT STDERR PROGRAM [ARG...]\n");
        return 2;
    }
    timeout_s = strtol(argv[1], NULL, 10);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    fflush(stdout);
    t0 = now_ns();
    child = fork();
    if (child < 0) {
        perror("measure: fork");
        return 2;
    }
    if (child == 0) {
        if (open_to(argv[2], O_RDONLY, 0) < 0 ||
            open_to(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 1) < 0 ||
            open_to(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 2) < 0) {
            perror("measure: redirect");
            _exit(127);
        }
        execvp(argv[5], argv + 5);
        perror("measure: exec");
        _exit(127);
    }
    if (timeout_s > 0)
        alarm((unsigned)timeout_s);
    do {
        got = wait4(child, &status, 0, &ru);
    } while (got < 0 && errno == EINTR);
    t1 = now_ns();
    alarm(0);
    if (got < 0) {
        perror("measure: wait4");
        return 2;
    }
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("rc=%d wall_ns=%lld utime_us=%lld stime_us=%lld maxrss_kb=%ld timed_out=%d "
           "fork_ns=%lld\n", rc,
           t1 - t0, (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
           (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec, ru.ru_maxrss,
           (int)timed_out, t0);
    return 0;
}

/*
 * aiohcs-init: PID 1 of every container the aiohcs host service starts.
 *
 * An HCS container starts with no user process: processes arrive later through
 * HcsCreateProcess (`runc exec`). Something must still be PID 1 of the
 * container's PID namespace, and that something has two duties no ordinary
 * program performs:
 *
 *   1. Reap orphans. A process whose parent exits inside the container is
 *      re-parented to PID 1 of the namespace; without a reaper it stays a
 *      zombie forever.
 *   2. Make shutdown graceful. The kernel ignores signals sent to a
 *      namespace's PID 1 unless it installed a handler, and when PID 1 dies
 *      the kernel SIGKILLs everything else. So on SIGTERM (the service's
 *      HcsShutDownComputeSystem) we forward SIGTERM to every process of the
 *      namespace and exit 0 only once they are all gone, which gives them the
 *      chance to clean up. The service escalates to SIGKILL after its grace
 *      period if something ignores SIGTERM.
 *
 * Built static (see Makefile) so it runs in any rootfs, even one without a
 * libc. It uses nothing beyond a handful of syscalls; signals are taken
 * synchronously with sigtimedwait(), so there is no async-signal-safety to
 * reason about.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void reap_all(void)
{
    /* Collect every exited child; we do not care about their statuses (the
     * host service learns exit codes of the processes it started itself,
     * because those are its children, not ours). */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static int others_alive(void)
{
    /* kill(-1, 0) from PID 1 of a PID namespace probes every other process of
     * the namespace; ESRCH means none is left. */
    return !(kill(-1, 0) < 0 && errno == ESRCH);
}

int main(void)
{
    sigset_t set;
    int terminating = 0;

    /* Block the signals we handle so they queue up for sigtimedwait() instead
     * of interrupting us at random points. */
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);

    for (;;) {
        struct timespec poll = {0, 50 * 1000 * 1000};
        int sig;

        reap_all();
        if (terminating && !others_alive())
            return 0;

        /* While terminating, poll: processes started by `runc exec` are not
         * our children, so no SIGCHLD tells us when they are gone. */
        sig = terminating ? sigtimedwait(&set, NULL, &poll) : sigwaitinfo(&set, NULL);
        if (sig < 0)
            continue; /* EAGAIN (poll timeout) or EINTR */
        if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
            if (!terminating) {
                terminating = 1;
                kill(-1, SIGTERM);
            }
        }
    }
}

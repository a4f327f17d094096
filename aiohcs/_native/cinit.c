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
 *
 * The same binary has a second, unrelated mode, the console exec wrapper:
 *
 *   /.aiohcs/init --await-winsize ROWS COLS [--status-fd N] -- PROGRAM ARGS...
 *
 * A console process (EmulateConsole with ConsoleSize) gets its pty from the
 * runtime through --console-socket, and only then can the host service set
 * the pty's size. crun starts the process without waiting for that, so the
 * program could see a 0x0 terminal. The service therefore runs such a process
 * as this wrapper, which waits until the terminal on its stdin has the wanted
 * size and then execs the real program: the program never sees any other
 * size. See run_wrapper() and docs/host.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* How often and how long the wrapper polls for the terminal size. The service
 * sets the size right after it receives the pty, so the wait is normally one
 * or two polls; the timeout only keeps a process from hanging forever if the
 * size never comes (the service failed to set it, or the pty was resized to
 * something else before we looked). */
#define WINSIZE_POLL_NS (2L * 1000 * 1000)
#define WINSIZE_TIMEOUT_MS 2000L

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

static long monotonic_ms(void)
{
    struct timespec now;

    /* CLOCK_MONOTONIC cannot fail on Linux for a valid pointer; 0 on the
     * impossible error just makes the timeout count from then. */
    if (clock_gettime(CLOCK_MONOTONIC, &now) < 0)
        return 0;
    return now.tv_sec * 1000L + now.tv_nsec / (1000L * 1000);
}

/* A terminal dimension as given on the command line: 0..65535 (struct
 * winsize holds unsigned shorts). Returns -1 if `text` is anything else. */
static long parse_dimension(const char *text)
{
    char *end;
    long value;

    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0 || value > 65535)
        return -1;
    return value;
}

/* Wait until the terminal on stdin is rows x cols, or the timeout passes.
 * Proceeding anyway on timeout (and when stdin is no terminal at all) is
 * deliberate: a program with a wrong size is better than a hung one, and we
 * write nothing to the terminal, which belongs to the program. */
static void await_winsize(long rows, long cols)
{
    long deadline = monotonic_ms() + WINSIZE_TIMEOUT_MS;

    for (;;) {
        struct winsize ws;
        struct timespec pause = {0, WINSIZE_POLL_NS};

        if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) < 0) {
            if (errno == EINTR)
                continue;
            return; /* not a terminal (ENOTTY) or closed: nothing to wait for */
        }
        if (ws.ws_row == rows && ws.ws_col == cols)
            return;
        if (monotonic_ms() >= deadline)
            return;
        /* An interrupted sleep just polls a little early. */
        nanosleep(&pause, NULL);
    }
}

/* Report a failed exec: to the status fd (if any) for the service, which
 * turns it into the HcsCreateProcess error, and to stderr for a human. The
 * status record is the errno as a native int followed by the message. */
static void report_exec_failure(int status_fd, const char *program, int err)
{
    char msg[512];
    int len;

    if (strchr(program, '/') != NULL)
        len = snprintf(msg, sizeof msg, "exec \"%s\": %s", program, strerror(err));
    else if (err == ENOENT)
        len = snprintf(msg, sizeof msg, "exec \"%s\": executable file not found in $PATH",
                       program);
    else
        len = snprintf(msg, sizeof msg, "exec \"%s\": %s", program, strerror(err));
    if (len < 0)
        len = 0;
    else if ((size_t)len >= sizeof msg)
        len = sizeof msg - 1; /* truncated by snprintf; still NUL-terminated */

    if (status_fd >= 0) {
        /* One write each, both far below PIPE_BUF, so the reader sees whole
         * records. A failure here leaves the service with just the exit code
         * 127 and an EOF; nothing better can be done about it. */
        if (write(status_fd, &err, sizeof err) == (ssize_t)sizeof err)
            (void)!write(status_fd, msg, (size_t)len);
    }
    (void)!write(STDERR_FILENO, msg, (size_t)len);
    (void)!write(STDERR_FILENO, "\n", 1);
}

static int usage(void)
{
    static const char text[] =
        "usage: aiohcs-init                      (PID 1 of a container)\n"
        "       aiohcs-init --await-winsize ROWS COLS [--status-fd N] -- PROGRAM [ARGS...]\n";
    (void)!write(STDERR_FILENO, text, sizeof text - 1);
    return 127;
}

/* The console exec wrapper (see the top of the file). Exit codes follow the
 * shell: 127 when PROGRAM could not be run, including bad usage, so a caller
 * that only sees the exit code still knows nothing ran. */
static int run_wrapper(int argc, char **argv)
{
    long rows, cols;
    int status_fd = -1;
    int i = 4;

    if (argc < 4)
        return usage();
    rows = parse_dimension(argv[2]);
    cols = parse_dimension(argv[3]);
    if (rows < 0 || cols < 0)
        return usage();
    if (i + 1 < argc && strcmp(argv[i], "--status-fd") == 0) {
        char *end;
        long fd;

        errno = 0;
        fd = strtol(argv[i + 1], &end, 10);
        if (errno != 0 || end == argv[i + 1] || *end != '\0' || fd < 0 || fd > 1 << 20)
            return usage();
        status_fd = (int)fd;
        i += 2;
        /* The runtime passes preserved fds without close-on-exec. Setting it
         * makes a successful exec close the status pipe, which is how the
         * service learns that the program started: EOF with no record. */
        if (fcntl(status_fd, F_SETFD, FD_CLOEXEC) < 0)
            status_fd = -1; /* not open: report on stderr only */
    }
    if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc)
        return usage();
    i++;

    await_winsize(rows, cols);

    /* execvp searches PATH of our environment, which is the process's own
     * (the runtime set it from the process spec), as the runtime would. */
    execvp(argv[i], &argv[i]);
    report_exec_failure(status_fd, argv[i], errno);
    return 127;
}

int main(int argc, char **argv)
{
    sigset_t set;
    int terminating = 0;

    /* Dispatch before touching signals: the wrapper's signal mask and
     * dispositions are inherited by the program it execs. */
    if (argc > 1 && strcmp(argv[1], "--await-winsize") == 0)
        return run_wrapper(argc, argv);

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

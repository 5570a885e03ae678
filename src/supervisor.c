/* supervisor.c - launch and watch the ComfyUI child (see supervisor.h).
 *
 * Owns the child's pid, its two output pipes (read through bufferevents and
 * logged line by line with a "comfyui:" prefix), the SIGCHLD handler and the
 * SIGKILL timer. The child runs in its own process group so that stopping
 * it also stops anything it spawned (comfy-cli launches python). */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "supervisor.h"
#include "util.h"

extern char **environ;

struct sup {
    struct event_base *base;
    char **argv;
    char *cwd;
    char **env; /* extra "NAME=value" */
    sup_exit_fn on_exit;
    void *arg;
    pid_t pid;
    struct bufferevent *out[2];
    struct event *sigchld;
    struct event *kill_timer;
};

static char **
split_words(const char *cmd)
{
    size_t cap = 8, n = 0;
    char **v = xcalloc(cap, sizeof(*v));
    const char *p = cmd;

    for (;;) {
        size_t len;

        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (*p == '\0')
            break;
        len = strcspn(p, " \t\n");
        if (n + 2 > cap) {
            cap *= 2;
            v = xrealloc(v, cap * sizeof(*v));
        }
        v[n] = xmalloc(len + 1);
        memcpy(v[n], p, len);
        v[n][len] = '\0';
        n++;
        p += len;
    }
    v[n] = NULL;
    return v;
}

static void
free_vec(char **v)
{
    size_t i;

    if (v == NULL)
        return;
    for (i = 0; v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

const char *
sup_describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "status 0x%x", status);
    return buf;
}

static void
on_output(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line, esc[1024];
    size_t n;

    (void)arg;
    while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
        log_info("comfyui: %s", log_escape(esc, sizeof(esc), line, n));
        free(line);
    }
    /* A very long line without a newline: log it in pieces rather than
     * buffering without bound. */
    if (evbuffer_get_length(in) > 16384) {
        char chunk[16384];
        n = (size_t)evbuffer_remove(in, chunk, sizeof(chunk));
        log_info("comfyui: %s", log_escape(esc, sizeof(esc), chunk, n));
    }
}

static void
close_output(struct sup *s, int i)
{
    if (s->out[i] != NULL) {
        on_output(s->out[i], s);
        bufferevent_free(s->out[i]);
        s->out[i] = NULL;
    }
}

static void
on_output_event(struct bufferevent *bev, short what, void *arg)
{
    struct sup *s = arg;

    (void)what;
    close_output(s, bev == s->out[0] ? 0 : 1);
}

static void
on_sigchld(evutil_socket_t fd, short what, void *arg)
{
    struct sup *s = arg;
    int status;
    pid_t r;
    char desc[128];

    (void)fd;
    (void)what;
    if (s->pid <= 0)
        return;
    r = waitpid(s->pid, &status, WNOHANG);
    if (r != s->pid)
        return;
    s->pid = 0;
    if (s->kill_timer != NULL)
        event_del(s->kill_timer);
    /* Flush what the child wrote last: it often explains the exit. */
    close_output(s, 0);
    close_output(s, 1);
    log_warn("ComfyUI exited: %s", sup_describe_status(status, desc, sizeof(desc)));
    s->on_exit(status, s->arg);
}

static void
on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sup *s = arg;

    (void)fd;
    (void)what;
    if (s->pid > 0) {
        log_warn("ComfyUI did not stop after SIGTERM; sending SIGKILL");
        kill(-s->pid, SIGKILL);
        kill(s->pid, SIGKILL);
    }
}

struct sup *
sup_new(struct event_base *base, const char *cmd, const char *cwd,
        const char *const *extra_env, sup_exit_fn on_exit, void *arg)
{
    struct sup *s = xcalloc(1, sizeof(*s));
    size_t n = 0, i;

    s->base = base;
    s->argv = split_words(cmd);
    s->cwd = cwd != NULL ? xstrdup(cwd) : NULL;
    while (extra_env != NULL && extra_env[n] != NULL)
        n++;
    s->env = xcalloc(n + 1, sizeof(*s->env));
    for (i = 0; i < n; i++)
        s->env[i] = xstrdup(extra_env[i]);
    s->on_exit = on_exit;
    s->arg = arg;
    s->sigchld = evsignal_new(base, SIGCHLD, on_sigchld, s);
    evsignal_add(s->sigchld, NULL);
    s->kill_timer = evtimer_new(base, on_kill_timer, s);
    return s;
}

/* In the child, between fork and exec: only async-signal-safe calls. */
/* environ plus our extra variables (ours win), built before fork because
 * the child may not allocate: another thread could hold malloc's lock. */
static char **
build_env(const struct sup *s)
{
    size_t n = 0, k = 0, i, j;
    char **envp;

    while (environ[n] != NULL)
        n++;
    while (s->env[k] != NULL)
        k++;
    envp = xcalloc(n + k + 1, sizeof(*envp));
    k = 0;
    for (i = 0; i < n; i++) {
        size_t namelen = strcspn(environ[i], "=");
        int overridden = 0;
        for (j = 0; s->env[j] != NULL; j++)
            if (strncmp(s->env[j], environ[i], namelen + 1) == 0)
                overridden = 1;
        if (!overridden)
            envp[k++] = environ[i];
    }
    for (j = 0; s->env[j] != NULL; j++)
        envp[k++] = s->env[j];
    envp[k] = NULL;
    return envp;
}

static void
child_exec(struct sup *s, char **envp, int out_fd, int err_fd, int parent_pid)
{
    sigset_t none;
    static const char msg[] = "comfy-sidecar: cannot run CMD\n";

    setpgid(0, 0);
    /* Die with the sidecar even if it is SIGKILLed. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent_pid)
        _exit(127);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* lws set SIGPIPE to ignored; an ignored disposition survives exec. */
    signal(SIGPIPE, SIG_DFL);
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    if (out_fd > STDERR_FILENO)
        close(out_fd);
    if (err_fd > STDERR_FILENO)
        close(err_fd);
    if (s->cwd != NULL && chdir(s->cwd) < 0) {
        static const char m[] = "comfy-sidecar: cannot chdir to COMFY_HOME\n";
        if (write(STDERR_FILENO, m, sizeof(m) - 1) < 0)
            _exit(127);
        _exit(127);
    }
    execvpe(s->argv[0], s->argv, envp);
    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
        _exit(127);
    _exit(127);
}

int
sup_start(struct sup *s)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    pid_t pid, parent = getpid();
    sigset_t all, old;
    char **envp = NULL;
    int i;

    if (s->pid > 0 || s->argv[0] == NULL)
        return -1;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        log_error("cannot create pipes for ComfyUI: %s", strerror(errno));
        goto fail;
    }
    envp = build_env(s);
    /* Block signals across fork so the child cannot run our handlers. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = fork();
    if (pid == 0)
        child_exec(s, envp, out[1], err[1], (int)parent);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(envp);
    envp = NULL;
    if (pid < 0) {
        log_error("cannot fork ComfyUI: %s", strerror(errno));
        goto fail;
    }
    close(out[1]);
    close(err[1]);
    s->pid = pid;
    for (i = 0; i < 2; i++) {
        int fd = i == 0 ? out[0] : err[0];
        evutil_make_socket_nonblocking(fd);
        s->out[i] = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
        bufferevent_setcb(s->out[i], on_output, NULL, on_output_event, s);
        bufferevent_enable(s->out[i], EV_READ);
    }
    log_info("launched ComfyUI (pid %d): %s", (int)pid, s->argv[0]);
    return 0;
fail:
    free(envp);
    for (i = 0; i < 2; i++) {
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    return -1;
}

int
sup_running(const struct sup *s)
{
    return s != NULL && s->pid > 0;
}

void
sup_stop(struct sup *s, int timeout_s)
{
    struct timeval tv = {timeout_s, 0};

    if (s == NULL || s->pid <= 0)
        return;
    log_info("stopping ComfyUI (pid %d): SIGTERM, SIGKILL after %d s",
             (int)s->pid, timeout_s);
    kill(-s->pid, SIGTERM);
    kill(s->pid, SIGTERM);
    evtimer_add(s->kill_timer, &tv);
}

void
sup_kill(struct sup *s)
{
    if (s == NULL || s->pid <= 0)
        return;
    log_warn("killing ComfyUI (pid %d)", (int)s->pid);
    kill(-s->pid, SIGKILL);
    kill(s->pid, SIGKILL);
}

void
sup_free(struct sup *s)
{
    if (s == NULL)
        return;
    if (s->pid > 0) {
        int status;
        kill(-s->pid, SIGKILL);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
    }
    close_output(s, 0);
    close_output(s, 1);
    event_free(s->sigchld);
    event_free(s->kill_timer);
    free_vec(s->argv);
    free_vec(s->env);
    free(s->cwd);
    free(s);
}

/* supervisor.h - the ComfyUI child process: launch, log its output, notice
 * its exit (any code, 0 included), stop it (SIGTERM, then SIGKILL). */
#ifndef SIDECAR_SUPERVISOR_H
#define SIDECAR_SUPERVISOR_H

struct event_base;
struct sup;

/* Called on the main thread when the child has exited and been reaped.
 * status is as from waitpid. */
typedef void (*sup_exit_fn)(int status, void *arg);

/* cmd is split on whitespace (no shell, like comfyui-api); cwd may be NULL.
 * extra_env is a NULL-terminated list of "NAME=value" added to the child's
 * environment (may be NULL). Strings are copied. */
struct sup *sup_new(struct event_base *base, const char *cmd, const char *cwd,
                    const char *const *extra_env, sup_exit_fn on_exit,
                    void *arg);

/* Start the child. Returns 0, or -1 if fork failed (logged). Exec failures
 * show up as an exit with status 127. */
int sup_start(struct sup *s);

/* 1 while a child is running. */
int sup_running(const struct sup *s);

/* Send SIGTERM to the child's process group, SIGKILL after timeout_s. The
 * exit callback still runs when it is reaped. No-op without a child. */
void sup_stop(struct sup *s, int timeout_s);

/* SIGKILL the child's process group now (a hung ComfyUI); the exit
 * callback follows when it is reaped. */
void sup_kill(struct sup *s);

/* Kill (SIGKILL) any child still running and free. */
void sup_free(struct sup *s);

/* "exit status 1" / "killed by signal 9 (Killed)" into buf. */
const char *sup_describe_status(int status, char *buf, size_t len);

#endif

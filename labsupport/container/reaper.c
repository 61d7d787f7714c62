/* lab-reaper: what a container's shim becomes once the container's program runs.
 *
 * The shim (Python) sets a container up, then execs this program. exec keeps
 * the PID, so it is still the parent of the container's PID 1 and the one to
 * reap it - in a few hundred KiB, where a Python stays at megabytes for as
 * long as the container lives. When PID 1 ends it kills whatever is left in
 * the container's cgroups, removes them and records the exit code. A network
 * on the lab bridge is left to the lab's Python, which unplugs a container
 * once it sees it ended.
 *
 * usage: lab-reaper PID DIR [--cgroup DIR]... [--forget FILE]...
 *   PID       the container's first process (our child)
 *   DIR       the container's state directory: the exit code goes to DIR/exit_code,
 *             the timeline marks to DIR/timeline
 *   --cgroup  a directory of the container's cgroup, to empty and remove
 *   --forget  a file that names a process for `clean` (ours, our child's): removed at the end
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PATHS 32

static const char *state_dir;

/* One line in the container's timeline, as labsupport.process.timeline writes them. */
static void mark(const char *step)
{
    char path[4096], line[256];
    struct timespec now;
    snprintf(path, sizeof path, "%s/timeline", state_dir);
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int n = snprintf(line, sizeof line, "%lld %d %s\n",
                     (long long)now.tv_sec * 1000000000LL + now.tv_nsec, (int)getpid(), step);
    if (write(fd, line, n) < 0) { /* a timeline is a nicety: never stop for it */ }
    close(fd);
}

/* SIGKILL every process in the group until none is left; then rmdir it and, if empty, its
 * parent (the lab's own <hierarchy>/lab). A killed process leaves its group a moment after
 * it dies, so rmdir is retried while the kernel says EBUSY. */
static void remove_group(const char *group)
{
    char procs[4096], parent[4096];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", group);
    for (int tries = 0; tries < 500; tries++) {
        FILE *f = fopen(procs, "r");
        if (f == NULL)
            return;  /* gone already */
        int pid, found = 0;
        while (fscanf(f, "%d", &pid) == 1) {
            kill(pid, SIGKILL);
            found = 1;
        }
        fclose(f);
        if (!found && (rmdir(group) == 0 || errno == ENOENT))
            break;
        if (!found && errno != EBUSY) {
            fprintf(stderr, "lab-reaper: cannot remove %s: %s\n", group, strerror(errno));
            return;
        }
        usleep(10000);
    }
    snprintf(parent, sizeof parent, "%s", group);
    rmdir(dirname(parent));
}

static void record_exit(const char *code)
{
    char path[4096], scratch[4096];
    snprintf(path, sizeof path, "%s/exit_code", state_dir);
    snprintf(scratch, sizeof scratch, "%s/exit_code.new", state_dir);
    int fd = open(scratch, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    size_t n = strlen(code);
    if (write(fd, code, n) != (ssize_t)n)
        fprintf(stderr, "lab-reaper: cannot write %s\n", scratch);
    close(fd);
    rename(scratch, path);  /* a reader sees the whole code or none */
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: lab-reaper PID DIR [--cgroup DIR]... [--forget FILE]...\n");
        return 2;
    }
    pid_t child = (pid_t)atoi(argv[1]);
    state_dir = argv[2];
    const char *groups[MAX_PATHS], *records[MAX_PATHS];
    int ngroups = 0, nrecords = 0;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--cgroup") == 0 && i + 1 < argc && ngroups < MAX_PATHS) {
            groups[ngroups++] = argv[++i];
        } else if (strcmp(argv[i], "--forget") == 0 && i + 1 < argc && nrecords < MAX_PATHS) {
            records[nrecords++] = argv[++i];
        }
    }

    int status = SIGKILL;  /* if the child cannot be waited for, it reads as killed */
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    mark("the reaper records the end");
    for (int i = 0; i < ngroups; i++)
        remove_group(groups[i]);
    /* The exit code as Python's os.waitstatus_to_exitcode gives it: -N for signal N. */
    char code[32];
    snprintf(code, sizeof code, "%d\n",
             WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
    record_exit(code);
    for (int i = 0; i < nrecords; i++)
        unlink(records[i]);
    mark("the shim ends");
    return 0;
}

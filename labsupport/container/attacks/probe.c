/* The attack probe: one small static program that root inside a container runs to try
 * each door the lab's defenses close. Built at set-up (gcc -static), copied into a
 * container's root, run with one word naming the attack. It prints one line:
 *
 *     <attack>: allowed            the kernel let it through
 *     <attack>: refused <ERRNO>    the kernel said no, and why
 *
 * It does nothing with what it gets: a namespace it made is left at once, a device it
 * opened is closed, a key it added dies with it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static int report(const char *attack, long result) {
    if (result >= 0) {
        printf("%s: allowed\n", attack);
        return 0;
    }
    printf("%s: refused %s\n", attack, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
    return 1;
}

/* clone(2) asking for a namespace: the child exits at once, the parent reaps it. */
static long clone_with(unsigned long flags) {
    long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

static long clone3_plain(void) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

static long io_uring(void) {
    unsigned char params[120];  /* struct io_uring_params, zeroed */
    memset(params, 0, sizeof params);
    long fd = syscall(SYS_io_uring_setup, 1, params);
    if (fd >= 0)
        close((int)fd);
    return fd;
}

static long add_key(void) {
    return syscall(SYS_add_key, "user", "lab-probe", "x", 1, -2 /* KEY_SPEC_PROCESS_KEYRING */);
}

/* The loop controller (10:237): not on Docker's list of devices a container may open. */
static long open_device(void) {
    unlink("/tmp/lab-probe-dev");
    if (mknod("/tmp/lab-probe-dev", S_IFCHR | 0600, makedev(10, 237)) < 0)
        return -1;
    int fd = open("/tmp/lab-probe-dev", O_RDWR);
    int saved = errno;
    unlink("/tmp/lab-probe-dev");
    errno = saved;
    if (fd >= 0)
        close(fd);
    return fd;
}

/* Run from the host by an ordinary user: did a setuid bit set inside the container make it root? */
static long setuid_root(void) {
    if (geteuid() == 0)
        return 0;
    errno = EPERM;
    return -1;
}

/* As root inside: become an ordinary user, then run this very program, which root made
 * setuid-root. With no_new_privs the kernel ignores the setuid bit; without it, root again. */
static long drop_then_setuid(const char *self) {
    if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
        return -1;
    execl(self, self, "setuid", (char *)NULL);
    return -1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: probe clone|clone-newuser|clone-newnet|clone3|io_uring|add_key|device|setuid|nnp\n");
        return 2;
    }
    const char *attack = argv[1];
    if (!strcmp(attack, "clone-newuser")) return report(attack, clone_with(CLONE_NEWUSER));
    if (!strcmp(attack, "clone-newnet")) return report(attack, clone_with(CLONE_NEWNET));
    if (!strcmp(attack, "clone")) return report(attack, clone_with(0));
    if (!strcmp(attack, "clone3")) return report(attack, clone3_plain());
    if (!strcmp(attack, "io_uring")) return report(attack, io_uring());
    if (!strcmp(attack, "add_key")) return report(attack, add_key());
    if (!strcmp(attack, "device")) return report(attack, open_device());
    if (!strcmp(attack, "setuid")) return report(attack, setuid_root());
    if (!strcmp(attack, "nnp")) return report(attack, drop_then_setuid(argv[0]));
    fprintf(stderr, "probe: unknown attack %s\n", attack);
    return 2;
}

"""mycontainer - a container runtime of my own, built level by level in notebook B.

    python mycontainer.py NAME ROOT COMMAND [ARG...]

The parent makes what the host has to hold for the container (a cgroup, a network), forks the
container's first process and waits for it, then removes what it made. The child isolates
itself step by step and finally becomes the command.
"""
import os
import sys

from labsupport import cgroups, net  # levels 5 and 7
from labsupport.kernel import syscalls as k
from labsupport.net import run as netrun  # level 7

KEEP = 1 << 0 | 1 << 5 | 1 << 10  # level 6: CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE
BRIDGE = "labbuild0"              # the lab's bridge for this track
ADDRESS = "10.204.0.2/24"         # my container's address on it


def new_root(root):
    """Level 4: ROOT becomes the / of my mount namespace, and the host's / leaves it."""
    k.mount(root, root, None, k.MS_BIND | k.MS_REC)  # pivot_root wants a mount point
    os.chdir(root)
    k.pivot_root(".", ".")       # the old root now sits on top of the new one ...
    k.umount(".", k.MNT_DETACH)  # ... and is taken off: nothing is left to climb back to
    os.chdir("/")


def drop_privileges():
    """Level 6: root inside keeps three harmless capabilities, and exec can give none back."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        if not KEEP >> cap & 1:
            k.prctl(k.PR_CAPBSET_DROP, cap)  # exec refills root's sets from this one
    k.capset(KEEP, KEEP, 0)
    k.set_no_new_privs()


def contain(name, root, argv, group, netns):
    """The container's first process: PID 1 of a new PID namespace. Isolate, then exec."""
    group.add(os.getpid())                             # level 5: limited before it runs anything
    k.setns(os.open(net.namespace_path(netns), os.O_RDONLY), k.CLONE_NEWNET)  # level 7
    k.unshare(k.CLONE_NEWUTS)                          # level 2
    k.sethostname(name)                                # level 2
    k.unshare(k.CLONE_NEWNS)                           # level 3
    k.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)  # level 3: no mount of mine reaches the host
    new_root(root)                                     # level 4
    k.mount("proc", "/proc", "proc")                   # level 3: the /proc of my PID namespace
    drop_privileges()                                  # level 6
    os.execvp(argv[0], argv)                           # level 1


def run(name, root, argv):
    """Start the container, wait for it, remove what the host made for it; its exit code."""
    group = cgroups.create(name, controllers=["pids"])  # level 5
    group.limit_pids(20)                                # level 5
    netns = net.create_namespace(name)                  # level 7: made and plugged in first,
    net.plug(netns, BRIDGE, ADDRESS)                    # level 7: the child only joins it
    k.unshare(k.CLONE_NEWPID)                           # level 3: my next child is PID 1
    pid = os.fork()                                     # level 1
    if pid == 0:
        try:
            contain(name, root, argv, group, netns)
        except BaseException as err:
            print(f"mycontainer: {err}", file=sys.stderr)
        os._exit(127)  # the child never returns into the parent's code
    _, status = os.waitpid(pid, 0)
    netrun.remove_namespace(netns)                      # level 7
    group.remove()                                      # level 5
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2], sys.argv[3:]))

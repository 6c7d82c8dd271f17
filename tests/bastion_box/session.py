"""Stand-in for the SSM agent starting a Session Manager shell session, as the agent does it
on Linux: the session's user is `ssm-user` (created on first use, with sudo for everything,
unless it already exists) or the Run As user (which must exist); the shell runs as that user
on a new pseudo-terminal. The person's keystrokes are read from a file and typed into the
terminal; everything the terminal shows is printed, until the shell exits or the bound.

usage: session.py [--run-as USER] [--rows N] KEYSTROKES_FILE"""
import os
import pty
import pwd
import select
import struct
import subprocess
import sys
import termios
import fcntl
import time

argv = sys.argv[1:]
run_as, rows = None, 24
while argv and argv[0].startswith("--"):
    flag, value, argv = argv[0], argv[1], argv[2:]
    if flag == "--run-as":
        run_as = value
    elif flag == "--rows":
        rows = int(value)
keys = open(argv[0], "rb").read()

if not os.path.exists("/run/box/agent-started"):
    print("An error occurred (TargetNotConnected): the SSM agent is not running on this instance")
    sys.exit(1)

if run_as is None:
    user = "ssm-user"
    try:
        pwd.getpwnam(user)
    except KeyError:
        # What the agent does when ssm-user is missing at a session's start.
        subprocess.run(["useradd", "--create-home", user], check=True)
        with open("/etc/sudoers.d/ssm-agent-users", "w") as f:
            f.write("# User rules for ssm-user\nssm-user ALL=(ALL) NOPASSWD:ALL\n")
        os.chmod("/etc/sudoers.d/ssm-agent-users", 0o440)
else:
    user = run_as
    try:
        pwd.getpwnam(user)
    except KeyError:
        print(f"Unable to start shell: failed to start pty since RunAs user {user} does not exist")
        sys.exit(1)

entry = pwd.getpwnam(user)
pid, fd = pty.fork()
if pid == 0:
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.chdir(entry.pw_dir if os.path.isdir(entry.pw_dir) else "/")
    env = {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user, "SHELL": "/bin/sh", "TERM": "xterm",
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    os.execve("/bin/bash", ["sh"], env)

fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 80, 0, 0))
deadline = time.monotonic() + float(os.environ.get("SESSION_BOUND", "30"))
out = bytearray()
# Type the keystrokes a line at a time once the terminal has shown something after the last
# one (the program reading them is then waiting), as a person does.
pending = keys.split(b"\n")
pending = [line + b"\n" for line in pending[:-1]] + ([pending[-1]] if pending[-1] else [])
quiet_since = time.monotonic()
while time.monotonic() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.05)
    if ready:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        quiet_since = time.monotonic()
    elif pending and time.monotonic() - quiet_since > 0.3:
        os.write(fd, pending.pop(0))
        quiet_since = time.monotonic()
try:
    os.kill(pid, 9)
except ProcessLookupError:
    pass
sys.stdout.write(out.decode(errors="replace"))

#!/bin/bash
# enter.sh DIR COMMAND...: runs COMMAND as root inside the box made by up.sh.
set -euo pipefail
dir="$(readlink -f "$1")"; shift
pid="$(cat "$dir/pid")"
exec nsenter --target "$pid" --mount --net --uts --ipc --pid \
  chroot "$dir/root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 TERM=xterm "$@"

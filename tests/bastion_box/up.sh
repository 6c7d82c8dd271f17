#!/bin/bash
# up.sh DIR: boots nothing yet; makes the bastion box and keeps it open.
#
# The box is this machine's own root seen through an overlay (writes go to a tmpfs and vanish
# with the box), in its own mount, network, UTS, IPC and PID namespaces. Inside it, the real
# useradd, sudo, nft, visudo and cloud-init of the distribution run as they would on a bastion;
# 169.254.169.254 is a fake instance metadata service on the box's loopback. What the box cannot
# have (AL2023's dnf, the SSM agent, the Session Manager plugin, the AWS CLI v2) are the
# stand-ins in this folder, installed into the box over the real paths.
#
# DIR/pid holds the PID of the box's first process (for enter.sh). The box lives until its
# standard input closes (the test process that made it has ended) or $BOX_LIFETIME seconds
# (default 900) have passed; then its first process exits and the kernel ends the rest.
set -euo pipefail
dir="$(readlink -f "$1")"
here="$(dirname "$(readlink -f "$0")")"
lifetime="${BOX_LIFETIME:-900}"
mkdir -p "$dir/lower" "$dir/root" "$dir/upper"
rm -f "$dir/pid" "$dir/up"

cat > "$dir/inside.sh" <<'INSIDE'
set -euo pipefail
dir="$1"; here="$2"; lifetime="$3"
root="$dir/root"
mount --bind / "$dir/lower"
mount -t tmpfs -o mode=0755 box-upper "$dir/upper"
mkdir -p "$dir/upper/data" "$dir/upper/work"
mount -t overlay box -o "lowerdir=$dir/lower,upperdir=$dir/upper/data,workdir=$dir/upper/work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$root/dev/pts"
mount --bind "$root/dev/pts/ptmx" "$root/dev/ptmx"
mount -t tmpfs -o mode=1777 tmp "$root/tmp"
mount -t tmpfs -o mode=0755 run "$root/run"
mount -t tmpfs -o mode=0755 nocgroup "$root/sys/fs/cgroup" 2>/dev/null || true
hostname bastion

# Network: loopback, which also carries the metadata service's address.
ip link set lo up
ip addr add 169.254.169.254/32 dev lo
# Connections to it come from another address, as on EC2 (from the instance's own): the
# firewall's reject answers to that, not to 169.254.169.254, which it would itself reject.
ip route replace local 169.254.169.254 dev lo table local proto kernel scope host src 127.0.0.1

# A clean slate where a bastion's AMI would have one: no users, grants or state of ours.
for u in ssm-user ec2-user fargate-connect ops; do
  chroot "$root" userdel -r "$u" >/dev/null 2>&1 || true
done
rm -rf "$root/var/lib/cloud" "$root/var/lib/fargate-connect" "$root/etc/fargate-connect"
rm -f "$root"/etc/sudoers.d/ssm-agent-users "$root"/etc/sudoers.d/90-cloud-init-users
echo "127.0.1.1 bastion" >> "$root/etc/hosts"
rm -rf "$root/etc/cloud/cloud.cfg.d"/*

# The stand-ins, over the paths AL2023 has them at.
install -d "$root/opt/box"
cp "$here"/*.py "$here"/cloud.cfg "$here"/session-manager-plugin "$dir/ecs.json" "$root/opt/box/"
install -d -m 0755 "$root/run/box"
# The stand-ins' logs, which they write as whichever user runs them.
install -m 0666 /dev/null "$root/run/box/aws.log"
install -m 0666 /dev/null "$root/run/box/plugin.log"
install -m 0755 "$here/aws" "$root/usr/bin/aws"
install -m 0755 "$here/dnf" "$root/usr/bin/dnf"
install -m 0755 "$here/systemctl" "$root/usr/local/sbin/systemctl"
install -m 0755 "$here/amazon-ssm-agent" "$root/usr/bin/amazon-ssm-agent"
install -m 0644 "$here/amazon-ssm-agent.service" "$root/usr/lib/systemd/system/amazon-ssm-agent.service"
install -m 0644 "$here/cloud.cfg" "$root/etc/cloud/cloud.cfg.d/99-box.cfg"
install -d "$root/var/lib/cloud/seed/nocloud"
cp "$dir/user-data" "$root/var/lib/cloud/seed/nocloud/user-data"
printf 'instance-id: i-0box\nlocal-hostname: bastion\n' > "$root/var/lib/cloud/seed/nocloud/meta-data"

# The metadata service, as root inside the box (it answers whoever reaches it).
chroot "$root" /usr/bin/python3 /opt/box/imds.py >"$dir/imds.log" 2>&1 &
for _ in $(seq 1 100); do
  if chroot "$root" /usr/bin/python3 -c 'import socket; socket.create_connection(("169.254.169.254", 80), 0.2)' 2>/dev/null; then
    break
  fi
  sleep 0.05
done
touch "$dir/up"
timeout "$lifetime" cat >/dev/null || true; echo "the box ends (its input closed, or $lifetime s passed)" >&2
INSIDE
# Its standard input is ours (a background job's would be /dev/null).
exec 3<&0
unshare --mount --net --uts --ipc --pid --fork --kill-child --propagation private \
  /bin/bash "$dir/inside.sh" "$dir" "$here" "$lifetime" 2>"$dir/inside.log" <&3 &
echo $! > "$dir/unshare.pid"
for _ in $(seq 1 200); do
  [ -e "$dir/up" ] && break
  kill -0 "$(cat "$dir/unshare.pid")" 2>/dev/null || { echo "the box did not come up: $(cat "$dir/inside.log")" >&2; exit 1; }
  sleep 0.05
done
[ -e "$dir/up" ] || { echo "the box did not come up in 10 s: $(cat "$dir/inside.log")" >&2; exit 1; }
# The first process inside the namespaces: the child of unshare.
pgrep -P "$(cat "$dir/unshare.pid")" | head -n1 > "$dir/pid"

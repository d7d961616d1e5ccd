#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# PID 1 of a test guest after switch_root: fresh kernel filesystems, then the harness's command.
# Results go to the writable 9p share at /kni-results; the guest powers off when done.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
results=/kni-results

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/hugepages
mount -t devpts -o gid=5,mode=620 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
# A checkout (or virtualenv) under the host's /tmp must stay visible under the fresh /tmp:
# park a bind mount of it in /run, then move it back on top of the new tmpfs.
keep_paths() {  # park | restore
    local kept=0 path
    while read -r path; do
        [ -n "$path" ] || continue
        if [ "$1" = park ]; then
            mkdir -p "/run/kni-keep/$kept" && mount --bind "$path" "/run/kni-keep/$kept"
        else
            mkdir -p "$path" && mount --move "/run/kni-keep/$kept" "$path"
        fi
        kept=$((kept + 1))
    done < "$results/keep_paths"
}
keep_paths park
mount -t tmpfs -o mode=1777 tmpfs /tmp
keep_paths restore
mount -t hugetlbfs hugetlbfs /dev/hugepages
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
hostname kni-guest
ip link set lo up

if [ -f "$results/ssh_port" ]; then
    modprobe virtio_net
    ip link set eth0 up
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
    mkdir -p /run/sshd && chmod 0755 /run/sshd
    /usr/sbin/sshd -o "AuthorizedKeysFile=$results/authorized_keys" -o PermitRootLogin=prohibit-password \
        -o StrictModes=no -o UseDNS=no -E "$results/sshd.log"
fi

: > "$results/started"
cd "$results" || exit 1
bash "$results/command.sh" > "$results/output.log" 2>&1 < /dev/null
echo $? > "$results/exit_code.partial"
dmesg > "$results/dmesg.log"
mv "$results/exit_code.partial" "$results/exit_code"
sync
echo o > /proc/sysrq-trigger
sleep 10

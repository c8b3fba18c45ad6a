#!/bin/sh
# Hardening of ve/server (and of the images extending it). Runs inside the
# image after every feature's image-scripts. Idempotent.
set -eu

# Kernel and network settings, applied at boot by systemd-sysctl (inside a
# container only those the container may set).
mkdir -p /etc/sysctl.d
cat >/etc/sysctl.d/90-kiln-harden.conf <<'SYSCTL'
# Installed by scripts/harden.sh of the kiln example profiles.
kernel.kptr_restrict = 2
kernel.dmesg_restrict = 1
kernel.yama.ptrace_scope = 1
kernel.unprivileged_bpf_disabled = 1
fs.protected_fifos = 2
fs.protected_regular = 2
fs.suid_dumpable = 0
net.ipv4.tcp_syncookies = 1
net.ipv4.icmp_echo_ignore_broadcasts = 1
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.default.accept_redirects = 0
net.ipv4.conf.all.secure_redirects = 0
net.ipv4.conf.default.secure_redirects = 0
net.ipv4.conf.all.send_redirects = 0
net.ipv4.conf.default.send_redirects = 0
net.ipv4.conf.all.accept_source_route = 0
net.ipv4.conf.default.accept_source_route = 0
net.ipv4.conf.all.log_martians = 1
net.ipv6.conf.all.accept_redirects = 0
net.ipv6.conf.default.accept_redirects = 0
net.ipv6.conf.all.accept_source_route = 0
net.ipv6.conf.default.accept_source_route = 0
SYSCTL

# No core dumps: they can hold secrets.
mkdir -p /etc/security/limits.d
cat >/etc/security/limits.d/90-kiln-nocore.conf <<'LIMITS'
# Installed by scripts/harden.sh of the kiln example profiles.
*	hard	core	0
LIMITS

# New files are not world-readable: login(1) reads UMASK from login.defs,
# shells started otherwise (su, sshd) read /etc/profile.d.
sed -i 's/^UMASK[[:space:]].*/UMASK\t\t027/' /etc/login.defs
mkdir -p /etc/profile.d
cat >/etc/profile.d/kiln-umask.sh <<'PROFILE'
# Installed by scripts/harden.sh of the kiln example profiles.
umask 027
PROFILE

# Home of root: private.
chmod 0700 /root

# No reboot from Ctrl-Alt-Del on the console.
if command -v systemctl >/dev/null 2>&1; then
	systemctl --quiet mask ctrl-alt-del.target
fi

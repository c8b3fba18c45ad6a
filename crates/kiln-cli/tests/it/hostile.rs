//! A hostile profile (docs/sandbox.md): image-scripts and build-side scripts
//! that try every way out of the sandbox, and symlinks planted in the tree
//! for kiln's own host-side steps. Built for real once; every attempt is
//! recorded inside the image and must have been denied, and nothing of the
//! host may have changed.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::{chmod_x, examples_copy, kiln, run, write};

const EPOCH: &str = "1700000000";
const IMAGE: &str = "distro/hostile";
const NVR: &str = "distro-hostile-1.0-1.kiln1.amd64";

/// Helpers shared by the scripts (installed as /etc/kiln-hostile/lib.sh).
/// Each attempt appends one line to `$R`: `NAME=denied (…)` or
/// `NAME=ESCAPED (…)`; facts to check are `info.NAME=VALUE`. Nothing here
/// ever fails the script.
const LIB_SH: &str = r##"# Helpers of the hostile feature; sourced with $R set.
export LC_ALL=C
note() { printf '%s\n' "$*" >>"$R"; }
flat() { tr '\n' ' ' | cut -c1-300; }
info() { n=$1; shift; note "info.$n=$(printf '%s' "$*" | flat)"; }
# must_fail NAME CMD...: the command must not succeed.
must_fail() {
	n=$1; shift
	out=$("$@" </dev/null 2>&1); rc=$?
	out=$(printf '%s' "$out" | flat)
	if [ "$rc" -eq 0 ]; then note "$n=ESCAPED (succeeded: $out)"; else note "$n=denied (exit $rc: $out)"; fi
}
# must_be_empty NAME CMD...: the command must read nothing.
must_be_empty() {
	n=$1; shift
	out=$("$@" </dev/null 2>/dev/null | head -c 200 | od -An -c | flat)
	if [ -n "$out" ]; then note "$n=ESCAPED (read:$out)"; else note "$n=denied (read nothing)"; fi
}
# sc NAME NR ARGS...: a raw x86_64 system call, which the seccomp filter must
# answer with EPERM. Arguments: a number, s:STRING, z:N (N zero bytes),
# fh (an empty struct file_handle), fd:PATH (a descriptor of PATH).
SC='
my ($nr, @args) = @ARGV;
my @keep;
my @a = map {
	/^-?\d+$/ ? $_ + 0
	: /^s:(.*)$/s ? "$1"
	: /^z:(\d+)$/ ? "\0" x $1
	: /^fh$/ ? pack("Li", 128, 0) . ("\0" x 128)
	: /^fd:(.*)$/ ? do { open(my $f, "<", $1) or die "open $1: $!\n"; push @keep, $f; fileno($f) }
	: die "bad argument $_\n"
} @args;
$! = 0;
my $r = syscall($nr + 0, @a);
my $e = $! + 0;
exit 0 if $r == 0 && $nr == 56;
if ($r == -1 && $e == 1) { print "denied (EPERM)" }
elsif ($r == -1) { print "NOT-FILTERED (errno $e: $!)" }
else { print "ESCAPED (returned $r)" }
'
sc() { n=$1; shift; note "$n=$(perl -e "$SC" "$@" </dev/null 2>&1 | flat)"; }
# Connections to the host's listeners.
TCP='socket(my $s, 2, 1, 0) or die "socket: $!\n"; connect($s, pack("S n C4 x8", 2, $ARGV[0], 127, 0, 0, 1)) or die "connect: $!\n"; print "connected\n"'
UNIX='socket(my $s, 1, 1, 0) or die "socket: $!\n"; connect($s, pack("S a*", 1, "\0" . $ARGV[0])) or die "connect: $!\n"; print "connected\n"'
# The classic chroot escape: chroot into a subdirectory, climb out, chroot to
# where the climb ended; then look for a host path.
CHROOT='mkdir "/tmp/kiln-cj"; chroot "/tmp/kiln-cj" or die "chroot: $!\n"; chdir ".." for 1 .. 64; chroot "." or die "chroot back: $!\n"; -e $ARGV[0] or die "$ARGV[0] not there\n"; print "reached $ARGV[0]\n"'

# Who the script is.
identity() {
	info uid "$(id -u)"
	info gid "$(id -g)"
	info uid_map "$(cat /proc/self/uid_map)"
	info gid_map "$(cat /proc/self/gid_map)"
	for f in NoNewPrivs Seccomp CapInh CapPrm CapEff CapBnd CapAmb; do
		info "$f" "$(sed -n "s/^$f:[[:space:]]*//p" /proc/self/status)"
	done
}

# Processes, descriptors and environments the script can see.
processes() {
	count=0
	seen=
	for d in /proc/[0-9]*; do
		[ -d "$d" ] || continue
		count=$((count + 1))
		c=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null)
		case "$c" in
		*"$SLEEP_MARK"* | *nextest* | *cargo* | *"kiln build"* | *"--arch"*) seen="$seen [$c]" ;;
		esac
		e=$(readlink "$d/exe" 2>/dev/null)
		[ -z "$e" ] || [ -e "$e" ] || seen="$seen [exe of ${d#/proc/}: $e]"
	done
	info processes "$count: $(ps -e -o pid=,args= 2>/dev/null | tr -s ' ' | tr '\n' ';')"
	if [ -z "$seen" ] && [ "$count" -lt 16 ]; then
		note "host_processes=denied ($count own processes)"
	else
		note "host_processes=ESCAPED ($count processes:$seen)"
	fi
	fds=
	for l in /proc/[0-9]*/fd/*; do
		t=$(readlink "$l" 2>/dev/null) || continue
		case "$t" in /*) [ -e "$t" ] || fds="$fds [$l -> $t]" ;; esac
	done
	if [ -z "$fds" ]; then note "foreign_descriptors=denied (none)"; else note "foreign_descriptors=ESCAPED ($fds)"; fi
	if grep -qsF "$TOKEN" /proc/[0-9]*/environ; then
		note "host_environment=ESCAPED (the secret kiln was started with is in an environment)"
	else
		note "host_environment=denied (not inherited)"
	fi
}

network() {
	ifs=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ' ')
	if [ "$ifs" = "lo " ]; then note "net_interfaces=denied (only lo)"; else note "net_interfaces=ESCAPED ($ifs)"; fi
	must_fail tcp_host_loopback perl -e "$TCP" "$PORT"
	must_fail unix_host_abstract perl -e "$UNIX" "$ABSTRACT"
}

# The host's files: the bait directory by its absolute path, and the secret
# token anywhere.
host_files() {
	must_fail host_dir_visible test -e "$H"
	must_fail read_host_secret cat "$H/secret"
	must_fail write_host_marker sh -c "echo pwned >>'$H/marker'"
	must_fail host_dir_via_proc_root ls "/proc/1/root$H"
	must_fail chroot_escape perl -e "$CHROOT" "$H"
	found=$(grep -rlsF -D skip --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev "$@" -e "$TOKEN" / | head -n 5 | flat)
	if [ -n "$found" ]; then note "host_secret_anywhere=ESCAPED (in $found)"; else note "host_secret_anywhere=denied (nowhere)"; fi
}
"##;

/// The image-script that tries everything from inside the image.
const ATTEMPTS: &str = r##"#!/bin/sh
# Tries every way out of the sandbox; records each outcome, never fails.
set +e
R=/var/lib/hostile/results
mkdir -p /var/lib/hostile
: >"$R"
. /etc/kiln-hostile/env
. /etc/kiln-hostile/lib.sh
TOKEN="$TOKEN_A$TOKEN_B"

identity
info dev "$(ls -A /dev | sort | tr '\n' ' ')"

# Device nodes.
must_fail mknod_block mknod /tmp/sda b 8 0
must_fail mknod_kmsg mknod /dev/kmsgx c 1 11
must_fail mknod_mem_in_tree mknod /root/kiln-mem c 1 1

# Mounts, by the tool and by the system calls.
must_fail mount_devtmpfs mount -t devtmpfs none /mnt
must_fail mount_host_root mount -t ext4 "$ROOTDEV" /mnt
must_fail mount_tmpfs mount -t tmpfs none /mnt
must_fail mount_proc mount -t proc proc /mnt
must_fail mount_bind mount --bind / /mnt
must_fail remount_sys_rw mount -o remount,rw /sys
must_fail remount_proc_sys_rw mount -o remount,rw /proc/sys
must_fail umount_mask umount /proc/kcore
must_fail umount_proc umount -l /proc
sc sys_mount 165 s:none s:/mnt s:tmpfs 0 0
sc sys_umount2 166 s:/proc/kcore 2
sc pivot_root 155 s:/ s:/
sc open_tree 428 -100 s:/ 1
sc move_mount 429 -100 s:/ -100 s:/mnt 0
sc fsopen 430 s:tmpfs 0
sc fsconfig 431 -1 0 0 0 0
sc fsmount 432 -1 0 0
sc fspick 433 -100 s:/ 0
sc mount_setattr 442 -100 s:/ 0 z:32 32

# Kernel tunables (writes that would not change a value, where possible).
must_fail write_domainname sh -c 'echo kiln-hostile >/proc/sys/kernel/domainname'
must_fail write_drop_caches sh -c 'echo 1 >/proc/sys/vm/drop_caches'
must_fail write_core_pattern sh -c 'cat /proc/sys/kernel/core_pattern >/proc/sys/kernel/core_pattern'
must_fail write_modprobe sh -c 'cat /proc/sys/kernel/modprobe >/proc/sys/kernel/modprobe'
must_fail write_sysrq_trigger sh -c 'echo h >/proc/sysrq-trigger'
must_fail write_uevent_helper sh -c 'cat /sys/kernel/uevent_helper >/sys/kernel/uevent_helper'
must_fail cgroup_mkdir mkdir /sys/fs/cgroup/kiln-hostile

# Files by handle, keyrings.
sc name_to_handle_at 303 -100 s:/etc/hostname fh z:4 0
sc open_by_handle_at 304 -100 fh 0
sc keyctl 250 0 -3 1
sc add_key 248 s:user s:kiln-hostile s:payload 7 -3
sc request_key 249 s:user s:kiln-hostile 0 0
must_be_empty proc_keys cat /proc/keys
must_be_empty proc_key_users cat /proc/key-users

# The kernel's log, memory and symbols.
must_fail dmesg dmesg
sc syslog 103 3 z:4096 4096
must_be_empty proc_kmsg timeout 2 cat /proc/kmsg
must_be_empty proc_kcore head -c 64 /proc/kcore
must_be_empty proc_kallsyms cat /proc/kallsyms
must_be_empty proc_timer_list cat /proc/timer_list
must_be_empty proc_sched_debug cat /proc/sched_debug
must_be_empty proc_interrupts cat /proc/interrupts
must_be_empty sys_firmware ls -A /sys/firmware
must_be_empty sys_kernel_debug ls -A /sys/kernel/debug
must_be_empty sys_kernel_security ls -A /sys/kernel/security

# Modules, kexec, BPF, perf, power, swap, clocks, accounting, quotas
# (arguments that would change nothing where a call could succeed).
sc init_module 175 0 0 s:
sc finit_module 313 0 s: 0
sc delete_module 176 s:kiln_hostile 0
sc kexec_load 246 0 0 0 0
sc kexec_file_load 320 -1 -1 0 s: 0
sc bpf 321 0 z:128 128
sc perf_event_open 298 z:128 0 -1 -1 0
sc reboot 169 4276215469 672274793 305419896 0
sc swapon 167 s:/nonexistent 0
sc swapoff 168 s:/nonexistent
sc clock_settime 227 99 z:16
sc settimeofday 164 0 0
sc adjtimex 159 z:208
sc clock_adjtime 305 0 z:208
sc acct 163 0
sc quotactl 179 0 0 0 0
sc userfaultfd 323 0
sc vhangup 153
sc iopl 172 0
sc ioperm 173 0 0 0
sc uselib 134 s:/nonexistent
sc x32_getpid 1073741863

# Other namespaces.
sc setns 308 fd:/proc/self/ns/net 0
sc unshare_newuser 272 268435456
sc clone_newuser 56 268435473 0 0 0 0
must_fail unshare_user unshare -U true
must_fail unshare_user_map_root unshare -Ur true
must_fail unshare_mount_then_mount unshare -m sh -c 'mount -t tmpfs none /mnt'
must_fail unshare_net unshare -n true
must_fail nsenter_pid1 nsenter -t 1 -m -u -i -n -p true

processes
network
host_files

# Files the script owns end up with the owners it gave them.
echo owned >/var/lib/hostile/owned
chown 1000:1000 /var/lib/hostile/owned
info owned "$(stat -c %u:%g /var/lib/hostile/owned)"
info complete yes
"##;

/// The image-script that plants symlinks to host paths for kiln's own
/// host-side steps (cleanup, the subprofile's files, policy-rc.d). Some
/// host paths are mirrored inside the tree, so that a step resolving inside
/// the tree finds something there and acts on the mirror.
const PLANT: &str = r##"#!/bin/sh
set -eu
. /etc/kiln-hostile/env
mkdir -p "$H/logs" "$H/archives" "$H/evil"
echo "image log" >"$H/logs/image.log"
echo "image deb" >"$H/archives/image.deb"
rm -rf /var/log
ln -s "$H/logs" /var/log
rm -rf /var/lib/apt/lists
ln -s "$H/lists" /var/lib/apt/lists
rm -rf /var/cache/apt/archives
ln -s "$H/archives" /var/cache/apt/archives
rm -f /etc/machine-id
ln -s "$H/marker" /etc/machine-id
mkdir -p /var/lib/dbus
rm -f /var/lib/dbus/machine-id
ln -s "$H/dbus-machine-id" /var/lib/dbus/machine-id
ln -s "$H/evil" /etc/kiln-evil
ln -s "$H/marker" /etc/kiln-evil-link
ln -s "$H/secret" /etc/kiln-secret-link
ln -s "$H" /etc/kiln-host-dir
echo planted
"##;

/// The build-side script: the host's tools, the tree at `$KILN_ROOT`.
const BUILD_SIDE: &str = r##"#!/bin/sh
# Tries to reach the host from the build side; records each outcome.
set +e
R="$KILN_ROOT/var/lib/hostile/build-side-results"
: >"$R"
. "$KILN_ROOT/etc/kiln-hostile/env"
. "$KILN_ROOT/etc/kiln-hostile/lib.sh"
TOKEN="$TOKEN_A$TOKEN_B"

identity
info root "$(ls -A / | sort | tr '\n' ' ')"
info etc "$(ls -A /etc | sort | tr '\n' ' ')"
info cwd "$(pwd)"

must_fail read_shadow cat /etc/shadow
must_fail shadow_exists test -e /etc/shadow
must_fail gshadow_exists test -e /etc/gshadow
must_fail sudoers_exists test -e /etc/sudoers
must_fail write_through_planted_link sh -c "echo pwned >>'$KILN_ROOT/etc/kiln-evil-link'"
must_fail read_through_planted_link cat "$KILN_ROOT/etc/kiln-secret-link"
must_fail list_through_planted_link ls "$KILN_ROOT/etc/kiln-host-dir/"
must_fail write_usr touch /usr/kiln-hostile
must_fail write_etc touch /etc/kiln-hostile
must_fail write_root touch /kiln-hostile
must_fail write_repo touch /kiln/repo/kiln-hostile
must_fail write_domainname sh -c 'echo kiln-hostile >/proc/sys/kernel/domainname'
must_fail mknod_mem mknod /tmp/kiln-mem c 1 1
must_fail mount_tmpfs mount -t tmpfs none /tmp
must_fail unshare_user unshare -U true
must_fail dmesg dmesg
sc open_by_handle_at 304 -100 fh 0
sc keyctl 250 0 -3 1
sc setns 308 fd:/proc/self/ns/net 0
sc unshare_newuser 272 268435456

processes
network
host_files --exclude-dir=usr

# For the subprofile: kiln writes /usr/sbin/policy-rc.d before its
# image-scripts run; here it is a link to a host file.
ln -s "$H/policy-rc.d" "$KILN_ROOT/usr/sbin/policy-rc.d"
info planted_policy_rc_d "$(ls -l "$KILN_ROOT/usr/sbin/policy-rc.d" 2>&1)"

# What the build side must be able to do: write the tree.
echo ok >"$KILN_ROOT/var/lib/hostile/build-side-ok"
info complete yes
"##;

/// The subprofile's image-script: kiln wrote policy-rc.d for it.
const SUB_SCRIPT: &str = r##"#!/bin/sh
set +e
. /etc/kiln-hostile/env
R=/var/lib/hostile/sub-results
{
	echo "info.policy_rc_d=$(ls -l /usr/sbin/policy-rc.d 2>&1 | tr '\n' ' ')"
	echo "info.payload=$(ls -l "$H/evil/" 2>&1 | tr '\n' ' ')"
} >"$R"
"##;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("random bytes");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The block device the host's root file system is on.
fn root_device() -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .filter(|l| l.split(' ').nth(4) == Some("/"))
        .filter_map(|l| l.split_once(" - ").and_then(|(_, rest)| rest.split(' ').nth(1)))
        .next_back()
        .unwrap_or("/dev/vda")
        .to_string()
}

/// Host files the profile goes after: a directory outside the build, open
/// to every user (only invisibility protects it), with a secret, a marker
/// and the targets of the planted symlinks.
struct Bait {
    dir: tempfile::TempDir,
    /// In `secret`; must be found nowhere in the image or its outputs.
    token: String,
    /// In `marker`; likewise.
    mark: String,
}

impl Bait {
    fn new() -> Self {
        // Under /var/tmp, whatever the checkout's path: inside the sandbox
        // /tmp and /run are tmpfs, so the image-scripts could not mirror a
        // bait path there in the tree.
        std::fs::create_dir_all("/var/tmp").expect("/var/tmp");
        let dir = tempfile::Builder::new()
            .prefix("kiln-hostile-")
            .tempdir_in("/var/tmp")
            .expect("bait dir");
        let token = random_hex(16);
        let mark = random_hex(16);
        let h = dir.path();
        let files: [(&str, String); 8] = [
            ("secret", format!("{token}\n")),
            ("marker", format!("host marker {mark}\n")),
            ("dbus-machine-id", format!("host dbus machine id {mark}\n")),
            ("policy-rc.d", "#!/bin/sh\n# the host's, not kiln's\nexit 0\n".into()),
            ("logs/host.log", "host log line\n".into()),
            ("lists/deb.debian.org_Packages", "Package: host-list\n".into()),
            ("archives/host.deb", "host package\n".into()),
            ("evil/host-file", "host file\n".into()),
        ];
        for (name, text) in files {
            let p = h.join(name);
            let parent = p.parent().expect("parent");
            std::fs::create_dir_all(parent).expect("mkdir");
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o777)).expect("chmod dir");
            std::fs::write(&p, text).expect("bait file");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).expect("chmod file");
        }
        Self { dir, token, mark }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Everything about every entry under `dir` that a write, chmod, chown,
/// truncation, removal, creation or time change would alter.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).expect("stat");
        out.insert(d.clone(), describe(&d, &m));
        for e in std::fs::read_dir(&d).expect("read bait dir").flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("stat");
            if m.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), describe(&p, &m));
            }
        }
    }
    out
}

fn describe(p: &Path, m: &std::fs::Metadata) -> String {
    let content = if m.is_file() {
        String::from_utf8_lossy(&std::fs::read(p).expect("read bait")).into_owned()
    } else if m.file_type().is_symlink() {
        format!("-> {}", std::fs::read_link(p).expect("readlink").display())
    } else {
        String::new()
    };
    format!(
        "mode {:o} owner {}:{} size {} links {} inode {} mtime {}.{} ctime {}.{} {content:?}",
        m.mode(),
        m.uid(),
        m.gid(),
        m.size(),
        m.nlink(),
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// A host process the scripts must not see; killed when dropped.
struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_profile(repo: &Path, bait: &Bait, port: u16, abstract_name: &str, sleep_mark: &str) {
    let (a, b) = bait.token.split_at(bait.token.len() / 2);
    // The token travels in two halves: the profile must not hold it whole,
    // or the scripts would find it in their own tree.
    let env = format!(
        "H='{}'\nPORT={port}\nABSTRACT='{abstract_name}'\nSLEEP_MARK='{sleep_mark}'\nTOKEN_A='{a}'\nTOKEN_B='{b}'\nROOTDEV='{}'\n",
        bait.path().display(),
        root_device()
    );
    write(
        repo,
        "features/hostile/feature.toml",
        "description = \"tries every way out of the sandbox\"\n",
    );
    write(repo, "features/hostile/files/etc/kiln-hostile/env", &env);
    write(repo, "features/hostile/files/etc/kiln-hostile/lib.sh", LIB_SH);
    for (file, text) in [
        ("features/hostile/image-scripts.d/10-attempts", ATTEMPTS),
        ("features/hostile/image-scripts.d/20-plant", PLANT),
        ("features/hostile/scripts.d/10-build-side", BUILD_SIDE),
        ("features/hostile/sub/image-scripts.d/10-sub", SUB_SCRIPT),
    ] {
        write(repo, file, text);
        chmod_x(&repo.join(file));
    }
    // Installed by the files stage of the subprofile, after the image's
    // scripts made /etc/kiln-evil a link to a host directory.
    write(repo, "features/hostile/sub/files/etc/kiln-evil/payload", "payload\n");
    write(
        repo,
        &format!("images/{IMAGE}.toml"),
        "kind = \"distro\"\nextends = [\"ve/minimal\"]\nuse = [\"hostile\"]\nsubprofiles = [\"sub\"]\n\
         outputs = [\"tar\", \"squashfs\"]\n\
         [output.squashfs]\ncompression = \"lz4\"\n",
    );
}

/// `NAME=…` lines of a results file that are not `info.` lines and do not
/// say `denied`.
fn not_denied(results: &str) -> Vec<String> {
    results
        .lines()
        .filter(|l| !l.starts_with("info."))
        .filter(|l| !l.split_once('=').is_some_and(|(_, v)| v.starts_with("denied")))
        .map(str::to_string)
        .collect()
}

fn info<'a>(results: &'a str, name: &str) -> Option<&'a str> {
    results
        .lines()
        .find_map(|l| l.strip_prefix(&format!("info.{name}=")))
        .map(str::trim)
}

/// Capability bits that act on the host or reach past the sandbox: none may
/// be held. DAC_READ_SEARCH 2, SYS_MODULE 16, SYS_RAWIO 17, SYS_ADMIN 21,
/// SYS_BOOT 22, SYS_TIME 25, MKNOD 27, MAC_OVERRIDE 32, MAC_ADMIN 33,
/// SYSLOG 34, PERFMON 38, BPF 39.
const FORBIDDEN_CAPS: [u32; 12] = [2, 16, 17, 21, 22, 25, 27, 32, 33, 34, 38, 39];

/// Checks of the identity a sandboxed script reported.
fn check_identity(who: &str, results: &str, problems: &mut Vec<String>) {
    let mut expect = |name: &str, want: &str| {
        let got = info(results, name).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "));
        if got.as_deref() != Some(want) {
            problems.push(format!("{who}: info.{name} is {got:?}, expected {want:?}"));
        }
    };
    expect("uid", "0");
    expect("gid", "0");
    expect("uid_map", "0 1879048192 65536");
    expect("gid_map", "0 1879048192 65536");
    expect("NoNewPrivs", "1");
    expect("Seccomp", "2");
    expect("CapAmb", "0000000000000000");
    expect("complete", "yes");
    for set in ["CapEff", "CapPrm", "CapBnd", "CapInh"] {
        let mask = info(results, set).and_then(|v| u64::from_str_radix(v, 16).ok());
        match mask {
            Some(mask) => {
                let held: Vec<u32> = FORBIDDEN_CAPS
                    .iter()
                    .copied()
                    .filter(|c| mask & (1 << c) != 0)
                    .collect();
                if !held.is_empty() {
                    problems.push(format!("{who}: {set} {mask:016x} holds capabilities {held:?}"));
                }
            }
            None => problems.push(format!("{who}: no {set} recorded")),
        }
    }
}

/// Files under `dir` (symlinks not followed) that contain one of `needles`.
fn files_containing(dir: &Path, needles: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("grep");
    cmd.args(["-rlsF", "-D", "skip"]);
    for n in needles {
        cmd.arg("-e").arg(n);
    }
    let out = cmd.arg(dir).output().expect("grep runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// One member of a tar archive, as `tar -tv` lists it.
struct Member {
    /// The member's name as listed (to extract it by).
    name: String,
    uid: u32,
    gid: u32,
    /// A symlink's target.
    link: Option<String>,
}

/// The members of `tar`, by path without the leading `./`.
fn tar_members(tar: &Path) -> BTreeMap<String, Member> {
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(tar)
        .output()
        .expect("tar runs");
    assert!(
        out.status.success(),
        "tar -tvf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut members = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // MODE UID/GID SIZE DATE TIME NAME[ -> TARGET]
        let mut rest = line;
        let mut fields = Vec::new();
        for _ in 0..5 {
            let t = rest.trim_start();
            let end = t.find(' ').unwrap_or(t.len());
            fields.push(&t[..end]);
            rest = &t[end..];
        }
        let rest = rest.trim_start();
        let (name, link) = match rest.split_once(" -> ") {
            Some((n, l)) if line.starts_with('l') => (n, Some(l.to_string())),
            _ => (rest, None),
        };
        let (uid, gid) = fields[1].split_once('/').unwrap_or(("?", "?"));
        members.insert(
            name.trim_start_matches("./").to_string(),
            Member {
                name: name.to_string(),
                uid: uid.parse().unwrap_or(u32::MAX),
                gid: gid.parse().unwrap_or(u32::MAX),
                link,
            },
        );
    }
    members
}

/// The contents of member `rel` of `tar`, or a note saying it is missing.
fn tar_read(tar: &Path, members: &BTreeMap<String, Member>, rel: &str) -> String {
    let Some(m) = members.get(rel) else {
        return format!("<no /{rel} in the image>");
    };
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg(&m.name)
        .output()
        .expect("tar runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn accepted_nothing(what: &str, r: std::io::Result<()>, problems: &mut Vec<String>) {
    match r {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => problems.push(format!("{what}: accept failed: {e}")),
        Ok(()) => problems.push(format!("{what}: a sandboxed script connected to the host's listener")),
    }
}

#[test]
fn a_hostile_profile_stays_in_the_sandbox() {
    if !is_root() {
        eprintln!("skipped: building images needs root");
        return;
    }
    let bait = Bait::new();
    // Listeners on the host's loopback and abstract socket namespace: only a
    // process in the host's network namespace can reach them.
    let tcp = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = tcp.local_addr().expect("addr").port();
    let abstract_name = format!("kiln-hostile-{}", random_hex(8));
    let unix = UnixListener::bind_addr(&SocketAddr::from_abstract_name(abstract_name.as_bytes()).expect("name"))
        .expect("abstract listener");
    // A host process the scripts must not see.
    let sleep_mark = format!("86400.{}", u64::from_str_radix(&random_hex(6), 16).expect("hex"));
    let _sleeper = Sleeper(
        Command::new("sleep")
            .arg(&sleep_mark)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sleep starts"),
    );

    let repo = examples_copy();
    write_profile(repo.path(), &bait, port, &abstract_name, &sleep_mark);
    let before = snapshot(bait.path());
    let out = repo.path().join("out");
    let r = run(kiln()
        .args(["build", "--arch", "amd64", IMAGE])
        .arg("-C")
        .arg(repo.path())
        .arg("-o")
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        // Must not reach any sandboxed process.
        .env("KILN_HOSTILE_SECRET", &bait.token));
    let after = snapshot(bait.path());
    assert_eq!(r.code, 0, "the hostile build failed:\n{}\n{}", r.stdout, r.stderr);

    let tar = out.join(format!("{NVR}.tar"));
    let members = tar_members(&tar);
    let results = tar_read(&tar, &members, "var/lib/hostile/results");
    let build_side = tar_read(&tar, &members, "var/lib/hostile/build-side-results");
    let mut problems = Vec::new();

    // Every attempt was made and denied.
    for (who, text, expected) in [
        (
            "image-scripts",
            &results,
            &[
                "mknod_block",
                "mknod_kmsg",
                "mount_devtmpfs",
                "mount_host_root",
                "mount_tmpfs",
                "remount_sys_rw",
                "remount_proc_sys_rw",
                "write_domainname",
                "write_drop_caches",
                "write_sysrq_trigger",
                "open_by_handle_at",
                "keyctl",
                "add_key",
                "proc_keys",
                "dmesg",
                "syslog",
                "proc_kmsg",
                "host_processes",
                "host_dir_visible",
                "read_host_secret",
                "write_host_marker",
                "host_secret_anywhere",
                "net_interfaces",
                "tcp_host_loopback",
                "unix_host_abstract",
                "unshare_user",
                "unshare_mount_then_mount",
                "setns",
                "clone_newuser",
            ][..],
        ),
        (
            "build-side script",
            &build_side,
            &[
                "read_shadow",
                "shadow_exists",
                "host_dir_visible",
                "read_host_secret",
                "write_host_marker",
                "write_through_planted_link",
                "host_processes",
                "write_usr",
                "write_etc",
                "write_repo",
                "net_interfaces",
                "tcp_host_loopback",
                "host_secret_anywhere",
            ][..],
        ),
    ] {
        for name in expected {
            if !text.lines().any(|l| l.starts_with(&format!("{name}="))) {
                problems.push(format!("{who}: attempt `{name}` was not recorded"));
            }
        }
        for line in not_denied(text) {
            problems.push(format!("{who}: NOT DENIED: {line}"));
        }
        check_identity(who, text, &mut problems);
    }
    let dev: Vec<&str> = info(&results, "dev").unwrap_or("").split_whitespace().collect();
    let allowed = [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin", "stdout", "stderr",
    ];
    for d in &dev {
        if !allowed.contains(d) {
            problems.push(format!("image-scripts: /dev/{d} exists in the sandbox"));
        }
    }
    if info(&results, "owned") != Some("1000:1000") {
        problems.push(format!(
            "image-scripts: the chowned file shows {:?} inside",
            info(&results, "owned")
        ));
    }

    // Ownership on disk: root's files are root's, the chowned one 1000's,
    // and no id of the sandbox's host range is left anywhere.
    let owner = |rel: &str| members.get(rel).map(|m| (m.uid, m.gid));
    for (rel, want) in [
        ("var/lib/hostile/build-side-ok", (0, 0)),
        ("var/lib/hostile/results", (0, 0)),
        ("var/lib/hostile/owned", (1000, 1000)),
    ] {
        if owner(rel) != Some(want) {
            problems.push(format!(
                "/{rel} is owned by {:?} in the image, expected {want:?}",
                owner(rel)
            ));
        }
    }
    let unmapped: Vec<String> = members
        .iter()
        .filter(|(_, m)| m.uid > 65_535 || m.gid > 65_535)
        .map(|(path, m)| format!("/{path} {}:{}", m.uid, m.gid))
        .collect();
    if !unmapped.is_empty() {
        problems.push(format!("files owned by unmapped ids: {unmapped:?}"));
    }

    // Nothing of the host changed: the bait's contents, owners, modes and
    // times, the targets of every planted link included.
    if before != after {
        for (path, was) in &before {
            match after.get(path) {
                Some(now) if now == was => {}
                now => problems.push(format!(
                    "HOST FILE CHANGED: {}\n    before: {was}\n    after:  {now:?}",
                    path.display()
                )),
            }
        }
        for path in after.keys().filter(|p| !before.contains_key(*p)) {
            problems.push(format!("HOST FILE CREATED: {}", path.display()));
        }
    }
    // The planted links are still links in the image: kiln removed or
    // truncated nothing through them and copied no host file into the output.
    for rel in ["etc/machine-id", "var/log", "etc/kiln-secret-link", "etc/kiln-host-dir"] {
        if members
            .get(rel)
            .and_then(|m| m.link.as_deref())
            .is_none_or(|l| !l.starts_with('/'))
        {
            problems.push(format!("/{rel} is no longer the planted symlink in the image"));
        }
    }
    // No host secret in any output (the tar is uncompressed: its members'
    // contents are searched too).
    let needles = [bait.token.as_str(), bait.mark.as_str()];
    let leaked = files_containing(&out, &needles);
    if !leaked.is_empty() {
        problems.push(format!("host secrets copied into the outputs: {leaked:?}"));
    }

    // The subprofile: its files stage and policy-rc.d went through links to
    // host paths.
    let sub_file = std::fs::read_dir(&out)
        .expect("outdir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "squashfs")
                && p.file_name().is_some_and(|n| n.to_string_lossy().contains("-sub-"))
        });
    let sub_results = match &sub_file {
        Some(f) => {
            let o = Command::new("unsquashfs")
                .arg("-cat")
                .arg(f)
                .arg("var/lib/hostile/sub-results")
                .output()
                .expect("unsquashfs");
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
        None => {
            problems.push("no subprofile squashfs was written".into());
            String::new()
        }
    };

    // kiln wrote its own policy-rc.d over the link (not through it), and
    // the subprofile's file went to the tree's own copy of the linked path.
    if !info(&sub_results, "policy_rc_d").is_some_and(|l| l.starts_with("-rwx")) {
        problems.push("subprofile: /usr/sbin/policy-rc.d was not kiln's own file while its scripts ran".into());
    }
    if !info(&sub_results, "payload").is_some_and(|l| l.contains("payload")) {
        problems.push("subprofile: the feature file was not installed inside the tree".into());
    }

    // No connection reached the host's listeners.
    tcp.set_nonblocking(true).expect("nonblocking");
    accepted_nothing("TCP 127.0.0.1", tcp.accept().map(drop), &mut problems);
    unix.set_nonblocking(true).expect("nonblocking");
    accepted_nothing("abstract unix socket", unix.accept().map(drop), &mut problems);

    assert!(
        problems.is_empty(),
        "the sandbox let a hostile profile through:\n{}\n\n--- image-scripts (/var/lib/hostile/results):\n{results}\n\
         --- build-side (/var/lib/hostile/build-side-results):\n{build_side}\n--- subprofile:\n{sub_results}\n\
         --- kiln's stderr:\n{}",
        problems.join("\n"),
        r.stderr
    );
    eprintln!("image-scripts:\n{results}\nbuild side:\n{build_side}\nsubprofile:\n{sub_results}");
}

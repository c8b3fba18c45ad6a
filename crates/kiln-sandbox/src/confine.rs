//! What the command runs under besides namespaces: the user namespace it
//! enters, the capabilities it keeps, `no_new_privs` and the seccomp filter.
//! The filter and the capability sets are pure data, unit-tested here; stage 2
//! applies them last, just before `exec`.

use std::os::fd::AsFd;

use nix::sched::{CloneFlags, setns};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::sys;

/// First host uid and gid of the range that the sandbox's ids 0… map to.
/// Nothing on a host owns ids this high (distributions allocate users below
/// 65536 and subordinate ranges from 100000 upwards in 65536-id steps;
/// systemd's container ranges end at 0x6FFFFFFF). `kiln doctor` checks that
/// `/etc/subuid`, `/etc/subgid` and the password database do not overlap it.
pub const ID_BASE: u32 = 0x7000_0000;
/// How many ids are mapped: the sandbox's 0–65535 (every id a Debian tree
/// uses, `nobody` 65534 included).
pub const ID_COUNT: u32 = 65_536;

/// Capabilities the command keeps (in its own user namespace, where they only
/// act on what that namespace owns: files of the tree, its own processes).
/// What package maintainer scripts need: owners, modes, set-id bits, file
/// capabilities, dropping privileges to a system user, chroot.
const KEPT: &[(u32, CapabilitySet)] = &[
    (0, CapabilitySet::CHOWN),
    (1, CapabilitySet::DAC_OVERRIDE),
    (3, CapabilitySet::FOWNER),
    (4, CapabilitySet::FSETID),
    (5, CapabilitySet::KILL),
    (6, CapabilitySet::SETGID),
    (7, CapabilitySet::SETUID),
    (8, CapabilitySet::SETPCAP),
    (10, CapabilitySet::NET_BIND_SERVICE),
    (18, CapabilitySet::SYS_CHROOT),
    (29, CapabilitySet::AUDIT_WRITE),
    (31, CapabilitySet::SETFCAP),
];
/// Also kept when the command may mount in namespaces of its own (the package
/// bootstrap): `CAP_SYS_ADMIN` of its user namespace.
const KEPT_MOUNTING: &[(u32, CapabilitySet)] = &[(21, CapabilitySet::SYS_ADMIN)];
/// Highest capability number to drop from the bounding set.
const CAP_LAST: u32 = 63;

/// Which capabilities stay (numbers and the set).
pub(crate) fn kept_capabilities(mounting: bool) -> (Vec<u32>, CapabilitySet) {
    let mut numbers = Vec::new();
    let mut set = CapabilitySet::empty();
    let extra: &[(u32, CapabilitySet)] = if mounting { KEPT_MOUNTING } else { &[] };
    for (n, c) in KEPT.iter().chain(extra) {
        numbers.push(*n);
        set |= *c;
    }
    (numbers, set)
}

/// Enters the user namespace `userns` (whose 0 maps to [`ID_BASE`]) as its
/// root, with no supplementary groups. Must run single-threaded, after every
/// mount and the hostname are set: nothing of the namespaces the sandbox
/// lives in (owned by the host's user namespace) can be changed afterwards.
pub(crate) fn enter_userns(userns: impl AsFd) -> Result<(), String> {
    setns(userns, CloneFlags::CLONE_NEWUSER).map_err(|e| format!("setns: {e}"))?;
    setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    setresgid(root_gid, root_gid, root_gid).map_err(|e| format!("setresgid 0: {e}"))?;
    setresuid(root_uid, root_uid, root_uid).map_err(|e| format!("setresuid 0: {e}"))?;
    Ok(())
}

/// Raises every permitted capability into the effective set (after a
/// change of the filesystem ids dropped the file capabilities).
pub(crate) fn raise_effective() -> Result<(), String> {
    let mut sets = rustix::thread::capabilities(None).map_err(|e| format!("capget: {e}"))?;
    sets.effective = sets.permitted;
    rustix::thread::set_capabilities(None, sets).map_err(|e| format!("capset: {e}"))
}

/// Reduces the capabilities to [`kept_capabilities`] (bounding set, then
/// effective, permitted and inheritable; ambient cleared) and joins a fresh
/// session keyring.
pub(crate) fn drop_capabilities(mounting: bool) -> Result<(), String> {
    sys::new_session_keyring().map_err(|e| format!("new session keyring: {e}"))?;
    let (numbers, set) = kept_capabilities(mounting);
    for cap in 0..=CAP_LAST {
        if !numbers.contains(&cap) {
            sys::drop_bounding(cap).map_err(|e| format!("drop capability {cap} from the bounding set: {e}"))?;
        }
    }
    rustix::thread::clear_ambient_capability_set().map_err(|e| format!("clear ambient capabilities: {e}"))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: set,
            permitted: set,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| format!("capset: {e}"))
}

/// Sets `no_new_privs` and installs [`filter`].
pub(crate) fn seccomp(mounting: bool) -> Result<(), String> {
    let program = filter(mounting).ok_or_else(|| format!("no seccomp filter for {}", std::env::consts::ARCH))?;
    rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
    let program: Vec<seccompiler::sock_filter> = program
        .into_iter()
        .map(|i| seccompiler::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    seccompiler::apply_filter(&program).map_err(|e| format!("install the seccomp filter: {e}"))
}

// ------------------------------------------------------------ the filter

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of `args[0]` (little-endian hosts only, see [`AUDIT_ARCH`]).
const OFF_ARG0_LO: u32 = 16;

const CLONE_NEWUSER: u32 = 0x1000_0000;
/// The x32 ABI's syscall numbers on x86_64 carry this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[cfg(target_arch = "x86_64")]
pub(crate) const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
pub(crate) const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(target_arch = "riscv64")]
pub(crate) const AUDIT_ARCH: Option<u32> = Some(0xC000_00F3);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")))]
pub(crate) const AUDIT_ARCH: Option<u32> = None;

fn nr(n: libc::c_long) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Calls that act on the host kernel as a whole, or reach past the sandbox's
/// view: answered `EPERM`.
fn denied(mounting: bool) -> Vec<u32> {
    let mut list = vec![
        // Host files by handle, bypassing the mount namespace.
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        // Kernel keyrings.
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        // Kernel modules, kexec, BPF, perf, the kernel log.
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_syslog,
        // Power, swap, clocks, accounting, quotas.
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_settimeofday,
        libc::SYS_adjtimex,
        libc::SYS_acct,
        libc::SYS_quotactl,
        // Other namespaces' doors, page-fault handling by user code.
        libc::SYS_setns,
        libc::SYS_userfaultfd,
        libc::SYS_vhangup,
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib]);
    let mut list: Vec<u32> = list.into_iter().map(nr).collect();
    if !mounting {
        list.extend(mount_family());
    }
    list
}

/// The seccomp program: a foreign architecture (the i386 `int 0x80` entry
/// on x86_64 included) or an x32 call gets `EPERM`; so do the calls of
/// [`denied`] and `clone`/`unshare` with `CLONE_NEWUSER`; `clone3` gets
/// `ENOSYS` (its flags live in memory a filter cannot read; the C library
/// then falls back to `clone`); everything else is allowed. `None` on an
/// architecture kiln has no syscall table for.
pub(crate) fn filter(mounting: bool) -> Option<Vec<Insn>> {
    let arch = AUDIT_ARCH?;
    let ld = |k| Insn {
        code: LD_W_ABS,
        jt: 0,
        jf: 0,
        k,
    };
    let ret = |k| Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k,
    };
    let eperm = ret(RET_ERRNO | 1);
    let mut p = vec![
        ld(OFF_ARCH),
        Insn {
            code: JEQ_K,
            jt: 1,
            jf: 0,
            k: arch,
        },
        eperm,
        ld(OFF_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        p.push(Insn {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        });
        p.push(eperm);
    }
    let mut deny = denied(mounting);
    deny.sort_unstable();
    deny.dedup();
    for n in deny {
        p.push(Insn {
            code: JEQ_K,
            jt: 0,
            jf: 1,
            k: n,
        });
        p.push(eperm);
    }
    for call in [libc::SYS_clone, libc::SYS_unshare] {
        p.extend([
            Insn {
                code: JEQ_K,
                jt: 0,
                jf: 4,
                k: nr(call),
            },
            ld(OFF_ARG0_LO),
            Insn {
                code: JSET_K,
                jt: 0,
                jf: 1,
                k: CLONE_NEWUSER,
            },
            eperm,
            ld(OFF_NR),
        ]);
    }
    p.push(Insn {
        code: JEQ_K,
        jt: 0,
        jf: 1,
        k: nr(libc::SYS_clone3),
    });
    p.push(ret(RET_ERRNO | u32::try_from(libc::ENOSYS).unwrap_or(38)));
    p.push(ret(RET_ALLOW));
    Some(p)
}

/// `mount`, `umount2`, `pivot_root` and the new mount API.
fn mount_family() -> Vec<u32> {
    [
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
    ]
    .into_iter()
    .map(nr)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one `seccomp_data` the way the kernel does.
    fn eval(p: &[Insn], arch: u32, nr: u32, arg0: u64) -> u32 {
        let word = |off: u32| match off {
            OFF_NR => nr,
            OFF_ARCH => arch,
            OFF_ARG0_LO => (arg0 & 0xffff_ffff) as u32,
            other => panic!("load at {other}"),
        };
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => a = word(i.k),
                RET_K => return i.k,
                JEQ_K | JGE_K | JSET_K => {
                    let taken = match i.code {
                        JEQ_K => a == i.k,
                        JGE_K => a >= i.k,
                        _ => a & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    fn n(call: libc::c_long) -> u32 {
        nr(call)
    }

    #[test]
    fn the_filter_denies_what_it_lists_and_allows_the_rest() {
        let Some(arch) = AUDIT_ARCH else { return };
        let p = filter(false).expect("a filter for this architecture");
        assert!(p.len() < 250, "jumps are relative u8 offsets; keep the program short");
        let eperm = RET_ERRNO | 1;
        for call in [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_open_tree,
            libc::SYS_fsopen,
            libc::SYS_mount_setattr,
            libc::SYS_open_by_handle_at,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_kexec_load,
            libc::SYS_bpf,
            libc::SYS_syslog,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_clock_settime,
            libc::SYS_settimeofday,
            libc::SYS_setns,
        ] {
            assert_eq!(eval(&p, arch, n(call), 0), eperm, "syscall {call}");
        }
        for call in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_chown,
            libc::SYS_fchownat,
            libc::SYS_setxattr,
            libc::SYS_chroot,
            libc::SYS_ptrace,
        ] {
            assert_eq!(eval(&p, arch, n(call), 0), RET_ALLOW, "syscall {call}");
        }
        // New user namespaces: no; other clones: yes.
        assert_eq!(eval(&p, arch, n(libc::SYS_unshare), u64::from(CLONE_NEWUSER)), eperm);
        assert_eq!(
            eval(&p, arch, n(libc::SYS_clone), u64::from(CLONE_NEWUSER) | 0x11),
            eperm
        );
        assert_eq!(eval(&p, arch, n(libc::SYS_clone), 0x11), RET_ALLOW);
        assert_eq!(eval(&p, arch, n(libc::SYS_unshare), 0x0002_0000), RET_ALLOW);
        assert_eq!(eval(&p, arch, n(libc::SYS_clone3), 0), RET_ERRNO | 38);
        // Another architecture's table (i386 via int 0x80): nothing passes.
        assert_eq!(eval(&p, 0x4000_0003, 3, 0), eperm);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(eval(&p, arch, X32_SYSCALL_BIT | n(libc::SYS_mount), 0), eperm);
            assert_eq!(eval(&p, arch, X32_SYSCALL_BIT, 0), eperm);
        }
    }

    #[test]
    fn the_bootstrap_filter_allows_mounts_but_not_new_user_namespaces() {
        let Some(arch) = AUDIT_ARCH else { return };
        let p = filter(true).expect("a filter for this architecture");
        assert_eq!(eval(&p, arch, n(libc::SYS_mount), 0), RET_ALLOW);
        assert_eq!(eval(&p, arch, n(libc::SYS_umount2), 0), RET_ALLOW);
        assert_eq!(
            eval(&p, arch, n(libc::SYS_unshare), 0x0002_0000 | 0x2000_0000),
            RET_ALLOW
        );
        assert_eq!(
            eval(&p, arch, n(libc::SYS_unshare), u64::from(CLONE_NEWUSER)),
            RET_ERRNO | 1
        );
        assert_eq!(eval(&p, arch, n(libc::SYS_open_by_handle_at), 0), RET_ERRNO | 1);
        assert_eq!(eval(&p, arch, n(libc::SYS_kexec_load), 0), RET_ERRNO | 1);
    }

    #[test]
    fn capabilities_kept() {
        let (numbers, set) = kept_capabilities(false);
        assert!(set.contains(CapabilitySet::CHOWN | CapabilitySet::SETFCAP));
        assert!(!set.contains(CapabilitySet::SYS_ADMIN));
        assert!(!set.contains(CapabilitySet::MKNOD));
        assert!(!set.contains(CapabilitySet::DAC_READ_SEARCH));
        assert!(!numbers.contains(&21));
        let (numbers, set) = kept_capabilities(true);
        assert!(set.contains(CapabilitySet::SYS_ADMIN) && numbers.contains(&21));
        assert!(!set.contains(CapabilitySet::SYS_MODULE));
    }
}

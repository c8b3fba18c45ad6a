//! Bootable ISOs (docs/iso.md): a small live image built once per run and
//! booted in QEMU (TCG) under SeaBIOS and OVMF, its rescue entry chosen
//! from the menu over the serial console; ISO → ISO updates remastered and
//! booted; media of other layouts and broken media.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::support::{chmod_x, kiln, run, write};

const EPOCH: &str = "1700000000";
const NVR: &str = "distro-boottest-1.0-1";
const ISO: &str = "distro-boottest-1.0-1.amd64.iso";
/// A boot under TCG takes about 40 s alone; several share two cores.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The boot-test repository: minbase with a kernel and systemd; the `live`
/// subprofile adds live-boot (and so the initrd that boots the medium), the
/// `rescue` subprofile is the ISO's second menu entry. A unit prints a
/// marker with the NVR, the module booted and what an update wrote, on the
/// serial console, and powers off.
fn write_repo(repo: &Path) {
    write(
        repo,
        "kiln.toml",
        "[defaults]\nversion = \"1.0\"\nrelease = \"1\"\n[defaults.base]\ndistribution = \"debian\"\n\
         suite = \"bookworm\"\nvariant = \"minbase\"\n",
    );
    write(
        repo,
        "images/distro/boottest.toml",
        "description = \"boots, prints a marker and powers off\"\nuse = [\"boottest\"]\n\
         subprofiles = [\"live\", \"rescue\"]\noutputs = [\"squashfs\", \"iso\"]\n\
         packages = [\"linux-image-amd64\", \"systemd-sysv\"]\n\
         [output.squashfs]\ncompression = \"lz4\"\n\
         [output.iso]\nextra = [\"rescue\"]\ntimeout = 2\n\
         [subprofile.live]\npackages = [\"live-boot\"]\n[subprofile.rescue]\npackages = [\"less\"]\n",
    );
    write(
        repo,
        "features/boottest/feature.toml",
        "description = \"boot marker\"\n[files.\"usr/local/sbin/kiln-boottest\"]\nmode = \"0755\"\n",
    );
    write(
        repo,
        "features/boottest/files/etc/systemd/system/kiln-boottest.service",
        "[Unit]\nDescription=kiln boot test marker\nAfter=multi-user.target\n\n[Service]\nType=oneshot\n\
         ExecStart=/usr/local/sbin/kiln-boottest\n\n[Install]\nWantedBy=multi-user.target\n",
    );
    write(
        repo,
        "features/boottest/files/usr/local/sbin/kiln-boottest",
        "#!/bin/sh\nmodule=$(sed -n 's/.*module=\\([a-z0-9_-]*\\).*/\\1/p' /proc/cmdline)\n\
         echo \"KILN-BOOT-OK nvr=$(cat /etc/kiln-nvr) module=${module:-live} update=$(cat /etc/kiln-update 2>/dev/null || echo none)\" > /dev/ttyS0\n\
         systemctl poweroff --no-block\n",
    );
    let script = "#!/bin/sh\nset -eu\necho \"$KILN_NVR\" > /etc/kiln-nvr\n\
        mkdir -p /etc/systemd/system/multi-user.target.wants\n\
        ln -sf /etc/systemd/system/kiln-boottest.service /etc/systemd/system/multi-user.target.wants/\n\
        # Only what a live boot from a CD in QEMU loads.\n\
        for m in /lib/modules/*; do\n    k=$m/kernel\n\
            find \"$k\" -mindepth 1 -maxdepth 1 ! -name fs ! -name drivers ! -name lib ! -name crypto ! -name arch -exec rm -rf {} +\n\
            find \"$k/fs\" -mindepth 1 -maxdepth 1 ! -name isofs ! -name squashfs ! -name overlayfs -exec rm -rf {} +\n\
            find \"$k/drivers\" -mindepth 1 -maxdepth 1 ! -name ata ! -name scsi ! -name cdrom ! -name block -exec rm -rf {} +\n\
            depmod \"$(basename \"$m\")\"\ndone\n\
        rm -rf /usr/share/doc /usr/share/locale /usr/share/man\n";
    write(repo, "features/boottest/image-scripts.d/50-boottest", script);
    chmod_x(&repo.join("features/boottest/image-scripts.d/50-boottest"));
    chmod_x(&repo.join("features/boottest/files/usr/local/sbin/kiln-boottest"));
}

struct Fixture {
    dir: PathBuf,
    out: PathBuf,
}

/// The boot-test image, built once per test run under a file lock (each
/// test is a process of its own).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let run_id = std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| format!("pid-{}", std::process::id()));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("iso-fixture-{run_id}"));
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let lock = std::fs::File::create(dir.join("lock")).expect("lock file");
        lock.lock().expect("lock");
        let out = dir.join("out");
        if dir.join("done").exists() {
            return Fixture { dir, out };
        }
        let repo = dir.join("repo");
        let _ = std::fs::remove_dir_all(&repo);
        write_repo(&repo);
        let r = run(kiln()
            .args(["build", "distro/boottest", "-C"])
            .arg(&repo)
            .arg("-o")
            .arg(&out)
            .env("SOURCE_DATE_EPOCH", EPOCH));
        assert_eq!(r.code, 0, "build failed:\n{}\n{}", r.stdout, r.stderr);
        std::fs::write(dir.join("done"), "").expect("done marker");
        Fixture { dir, out }
    })
}

/// What a command printed; it must succeed.
fn output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file of an ISO, read with xorriso.
fn iso_file(iso: &Path, at: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("f");
    output(
        Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(iso)
            .args(["-extract", at])
            .arg(&dest),
    );
    std::fs::read(&dest).expect("extracted")
}

fn boot_report(iso: &Path) -> String {
    output(Command::new("xorriso").arg("-indev").arg(iso).args([
        "-report_el_torito",
        "plain",
        "-report_system_area",
        "plain",
    ]))
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Copy, Debug)]
enum Firmware {
    SeaBios,
    Ovmf,
}

/// Boots `iso` in QEMU (TCG) with the serial console on a pipe; `down`
/// moves that many entries down the GRUB menu once it shows. Returns what
/// the console printed; the guest must power off by itself.
fn boot(iso: &Path, firmware: Firmware, down: usize) -> String {
    let vars = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-m",
        "1024",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
    ]);
    cmd.arg("-cdrom").arg(iso);
    match firmware {
        Firmware::SeaBios => {
            cmd.args(["-machine", "pc"]);
        }
        Firmware::Ovmf => {
            let v = vars.path().join("vars.fd");
            std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &v).expect("OVMF vars (package ovmf)");
            cmd.args(["-machine", "q35", "-drive"])
                .arg("if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
                .arg("-drive")
                .arg(format!("if=pflash,format=raw,file={}", v.display()));
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 runs (package qemu-system-x86)");
    let console = Arc::new(Mutex::new(Vec::<u8>::new()));
    let reader = {
        let console = Arc::clone(&console);
        let mut stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                console.lock().expect("console").extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut stdin = child.stdin.take().expect("stdin");
    let start = Instant::now();
    let mut chosen = down == 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if !chosen && String::from_utf8_lossy(&console.lock().expect("console")).contains(": rescue") {
            // The menu is up: the arrow keys stop its countdown.
            for _ in 0..down {
                let _ = stdin.write_all(b"\x1b[B");
                std::thread::sleep(Duration::from_millis(300));
            }
            let _ = stdin.write_all(b"\r");
            chosen = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(stdin);
    let _ = reader.join();
    let text = String::from_utf8_lossy(&console.lock().expect("console")).into_owned();
    let tail: String = text
        .chars()
        .rev()
        .take(3000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    match status {
        Some(s) => assert!(s.success(), "{firmware:?}: qemu exited with {s}; console:\n{tail}"),
        None => panic!(
            "{firmware:?}: no power-off within {}s; console:\n{tail}",
            BOOT_TIMEOUT.as_secs()
        ),
    }
    text
}

#[test]
fn the_iso_is_hybrid_with_bios_and_uefi_entries_and_rebuilds_byte_identical() {
    let f = fixture();
    let iso = f.out.join(ISO);
    let report = boot_report(&iso);
    assert!(report.contains("El Torito boot img :   1  BIOS"), "{report}");
    assert!(report.contains("El Torito boot img :   2  UEFI"), "{report}");
    assert!(report.contains("grub2-mbr"), "hybrid MBR:\n{report}");
    assert!(
        report.contains("GPT partname local :   2  Appended2"),
        "EFI partition:\n{report}"
    );
    // The EFI system partition's type GUID, as xorriso prints it.
    assert!(report.contains("28732ac11ff8d211ba4b00a0c93ec93b"), "{report}");

    // Debian's live layout, each entry with its module file.
    let sums = String::from_utf8(iso_file(&iso, "/sha256sum.txt")).expect("utf-8");
    let live = std::fs::read(f.out.join("distro-boottest-live-1.0-1.amd64.squashfs")).expect("live squashfs");
    assert!(
        sums.contains(&format!("{}  ./live/filesystem.squashfs\n", sha256(&live))),
        "{sums}"
    );
    for file in [
        "live/vmlinuz",
        "live/initrd.img",
        "live/rescue.squashfs",
        "boot/grub/grub.cfg",
    ] {
        let data = iso_file(&iso, &format!("/{file}"));
        assert!(
            sums.contains(&format!("{}  ./{file}\n", sha256(&data))),
            "{file} in:\n{sums}"
        );
    }
    assert_eq!(iso_file(&iso, "/live/filesystem.module"), b"filesystem.squashfs\n");
    assert_eq!(iso_file(&iso, "/live/rescue.module"), b"rescue.squashfs\n");
    let menu = String::from_utf8(iso_file(&iso, "/boot/grub/grub.cfg")).expect("utf-8");
    assert!(
        menu.contains("module=rescue console=tty0 console=ttyS0,115200n8"),
        "{menu}"
    );

    // The same build again, its outputs made afresh: the same bytes.
    let again = f.dir.join("again");
    let r = run(kiln()
        .args(["build", "distro/boottest", "--rebuild-from", "outputs", "-C"])
        .arg(f.dir.join("repo"))
        .arg("-o")
        .arg(&again)
        .env("SOURCE_DATE_EPOCH", EPOCH));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(ISO), "{}", r.stderr);
    let a = std::fs::read(&iso).expect("iso");
    let b = std::fs::read(again.join(ISO)).expect("rebuilt iso");
    assert!(a == b, "two builds with SOURCE_DATE_EPOCH={EPOCH} differ");
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn the_iso_boots_under_seabios_and_ovmf_and_its_rescue_entry_boots() {
    let iso = fixture().out.join(ISO);
    let boots = [
        (Firmware::SeaBios, 0, "live"),
        (Firmware::Ovmf, 0, "live"),
        (Firmware::SeaBios, 1, "rescue"),
    ];
    let handles: Vec<_> = boots
        .iter()
        .map(|&(fw, down, module)| {
            let iso = iso.clone();
            std::thread::spawn(move || (fw, module, boot(&iso, fw, down)))
        })
        .collect();
    for h in handles {
        let (fw, module, console) = h.join().expect("boot thread");
        let want = format!("KILN-BOOT-OK nvr={NVR} module={module} update=none");
        assert!(console.contains(&want), "{fw:?} ({module}): no `{want}` on the console");
    }
}

#[test]
fn an_updated_iso_boots_with_its_update_and_new_initrd() {
    let f = fixture();
    let env = tempfile::tempdir().expect("tempdir");
    let cache = env.path().join("cache");
    let k = || {
        let mut c = kiln();
        c.env("KILN_CACHE_DIR", &cache).env("SOURCE_DATE_EPOCH", EPOCH);
        c
    };
    let r = run(k().args(["image", "import", "boottest", "1.0"]).arg(f.out.join(ISO)));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("(iso,"), "{}", r.stdout);
    // The update writes its marker and rebuilds the initrd with a hook that
    // prints on the console: the medium must carry the new initrd.
    let script = env.path().join("update.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -eu\necho \"$KILN_TARGET\" > /etc/kiln-update\n\
         mkdir -p /etc/initramfs-tools/scripts/init-top\n\
         printf '#!/bin/sh\\n[ \"$1\" = prereqs ] && exit 0\\necho KILN-INITRD-UPDATED > /dev/ttyS0 || true\\n' \
         > /etc/initramfs-tools/scripts/init-top/kiln-mark\n\
         chmod +x /etc/initramfs-tools/scripts/init-top/kiln-mark\nupdate-initramfs -u\n",
    )
    .expect("script");
    let update = |out: &Path| {
        run(k()
            .args([
                "update",
                "--from",
                "boottest@1.0",
                "--name",
                "boottest-updated",
                "--script",
            ])
            .arg(&script)
            .arg("-o")
            .arg(out))
    };
    let (out1, out2) = (env.path().join("out1"), env.path().join("out2"));
    let r = update(&out1);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let target = out1.join("boottest-updated.iso");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out1.join("boottest-updated.manifest.json")).expect("manifest"))
            .expect("json");
    let remaster = &manifest["target"]["remaster"];
    assert_eq!(remaster["layout"], "Debian live");
    assert_eq!(remaster["boot"], "replayed");
    assert_eq!(
        remaster["replaced"],
        serde_json::json!(["live/filesystem.squashfs", "live/vmlinuz", "live/initrd.img"])
    );
    assert_eq!(manifest["target"]["method"], "rewrite");
    let report = boot_report(&target);
    assert!(report.contains("El Torito boot img :   2  UEFI"), "{report}");
    let sums = String::from_utf8(iso_file(&target, "/sha256sum.txt")).expect("utf-8");
    for file in ["live/filesystem.squashfs", "live/initrd.img", "live/rescue.squashfs"] {
        let data = iso_file(&target, &format!("/{file}"));
        assert!(
            sums.contains(&format!("{}  ./{file}\n", sha256(&data))),
            "{file} in:\n{sums}"
        );
    }
    // Reproducible like a build.
    let r = update(&out2);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let same = std::fs::read(&target).expect("iso") == std::fs::read(out2.join("boottest-updated.iso")).expect("iso");
    assert!(same, "two updates with SOURCE_DATE_EPOCH={EPOCH} differ");
    let _ = std::fs::remove_dir_all(&out2);

    let console = boot(&target, Firmware::SeaBios, 0);
    assert!(console.contains("KILN-INITRD-UPDATED"), "the new initrd did not run");
    let want = format!("KILN-BOOT-OK nvr={NVR} module=live update=boottest-updated");
    assert!(console.contains(&want), "no `{want}` on the console");
}

/// A tree with a shell (busybox) as a squashfs at `dest`.
fn busybox_squashfs(dest: &Path) {
    let tree = tempfile::tempdir().expect("tempdir");
    for d in ["bin", "etc", "tmp", "proc", "dev", "sys", "run"] {
        std::fs::create_dir_all(tree.path().join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", tree.path().join("bin/busybox")).expect("busybox (package busybox-static)");
    std::os::unix::fs::symlink("busybox", tree.path().join("bin/sh")).expect("symlink");
    std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
    output(
        Command::new("mksquashfs")
            .arg(tree.path())
            .arg(dest)
            .args(["-noappend", "-quiet", "-comp", "gzip"]),
    );
}

#[test]
fn a_grub_mkrescue_medium_is_remastered_without_its_hfsplus_tree() {
    let env = tempfile::tempdir().expect("tempdir");
    let medium = env.path().join("medium");
    busybox_squashfs(&medium.join("live/filesystem.squashfs"));
    let sq = std::fs::read(medium.join("live/filesystem.squashfs")).expect("squashfs");
    std::fs::write(
        medium.join("sha256sum.txt"),
        format!("{}  ./live/filesystem.squashfs\n", sha256(&sq)),
    )
    .expect("sums");
    let iso = env.path().join("rescue.iso");
    output(Command::new("grub-mkrescue").arg("-o").arg(&iso).arg(&medium));
    assert!(
        boot_report(&iso).contains("HFSPLUS"),
        "grub-mkrescue writes an HFS+ tree"
    );

    let cache = env.path().join("cache");
    let k = || {
        let mut c = kiln();
        c.env("KILN_CACHE_DIR", &cache);
        c
    };
    let r = run(k().args(["image", "import", "mkrescue", "1"]).arg(&iso));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let script = env.path().join("u.sh");
    std::fs::write(&script, "#!/bin/sh\necho updated > /etc/updated\n").expect("script");
    let out = env.path().join("out");
    let r = run(k()
        .args(["update", "--from", "mkrescue@1", "--name", "mr", "--script"])
        .arg(&script)
        .arg("-o")
        .arg(&out));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("mr.manifest.json")).expect("manifest")).expect("json");
    assert_eq!(manifest["target"]["remaster"]["boot"], "replayed without HFS+");
    assert_eq!(
        manifest["target"]["remaster"]["replaced"],
        serde_json::json!(["live/filesystem.squashfs"])
    );
    let target = out.join("mr.iso");
    let report = boot_report(&target);
    assert!(report.contains("El Torito boot img :   1  BIOS"), "{report}");
    assert!(report.contains("El Torito boot img :   2  UEFI"), "{report}");
    assert!(report.contains("grub2-mbr"), "{report}");
    let new_sq = iso_file(&target, "/live/filesystem.squashfs");
    let sums = String::from_utf8(iso_file(&target, "/sha256sum.txt")).expect("utf-8");
    assert_eq!(sums, format!("{}  ./live/filesystem.squashfs\n", sha256(&new_sq)));
    let extracted = env.path().join("new.squashfs");
    std::fs::write(&extracted, &new_sq).expect("write");
    let cat = output(
        Command::new("unsquashfs")
            .arg("-cat")
            .arg(&extracted)
            .arg("etc/updated"),
    );
    assert_eq!(cat, "updated\n");
}

#[test]
fn mkimage_profiles_media_update_and_broken_media_are_refused() {
    let env = tempfile::tempdir().expect("tempdir");
    let cache = env.path().join("cache");
    let k = || {
        let mut c = kiln();
        c.env("KILN_CACHE_DIR", &cache);
        c
    };
    let mkisofs = |tree: &Path, iso: &Path| {
        output(
            Command::new("xorriso")
                .args(["-as", "mkisofs", "-r", "-V", "TEST", "-o"])
                .arg(iso)
                .arg(tree),
        );
    };

    // mkimage-profiles: stage2 images at the root, named after the stage.
    let alt = env.path().join("alt");
    busybox_squashfs(&alt.join("live"));
    busybox_squashfs(&alt.join("rescue"));
    write(&alt, "boot/vmlinuz", "kernel\n");
    write(&alt, "boot/full.cz", "initrd\n");
    let live = std::fs::read(alt.join("live")).expect("live");
    std::fs::write(alt.join("md5sum.txt"), "0123  ./live\n4567  ./rescue\n").expect("sums");
    let alt_iso = env.path().join("alt.iso");
    mkisofs(&alt, &alt_iso);
    let r = run(k().args(["image", "import", "alt", "1"]).arg(&alt_iso));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let script = env.path().join("u.sh");
    std::fs::write(&script, "#!/bin/sh\necho updated > /etc/updated\n").expect("script");
    let out = env.path().join("out");
    let r = run(k()
        .args(["update", "--from", "alt@1", "--name", "alt-new", "--script"])
        .arg(&script)
        .arg("-o")
        .arg(&out));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let target = out.join("alt-new.iso");
    let new_live = iso_file(&target, "/live");
    assert_ne!(new_live, live);
    let md5 = String::from_utf8(iso_file(&target, "/md5sum.txt")).expect("utf-8");
    let want: String = {
        use md5::Digest;
        md5::Md5::digest(&new_live).iter().map(|b| format!("{b:02x}")).collect()
    };
    assert_eq!(
        md5,
        format!("{want}  ./live\n4567  ./rescue\n"),
        "only the replaced file's line changes"
    );
    // A build can start from it: its root squashfs is the base tree.
    let repo = env.path().join("repo");
    write(&repo, "kiln.toml", "[defaults]\nversion = \"1\"\nrelease = \"1\"\n");
    write(
        &repo,
        "images/ve/fromiso.toml",
        "kind = \"ve\"\noutputs = [\"tar\"]\nscripts = [\"scripts/mark.sh\"]\n[base]\nfrom = \"alt@1\"\n",
    );
    write(&repo, "scripts/mark.sh", "#!/bin/sh\necho built > /etc/built\n");
    chmod_x(&repo.join("scripts/mark.sh"));
    let built = env.path().join("built");
    let r = run(k().args(["build", "ve/fromiso", "-C"]).arg(&repo).arg("-o").arg(&built));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let tar = output(
        Command::new("tar")
            .arg("-tf")
            .arg(built.join("ve-fromiso-1-1.amd64.tar")),
    );
    assert!(tar.contains("bin/busybox") && tar.contains("etc/built"), "{tar}");

    // An ISO source can also become a plain squashfs.
    let r = run(k()
        .args([
            "update", "--from", "alt@1", "--name", "alt-sq", "--format", "squashfs", "--script",
        ])
        .arg(&script)
        .arg("-o")
        .arg(&out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        std::fs::read(out.join("alt-sq.squashfs"))
            .expect("squashfs")
            .starts_with(b"hsqs")
    );

    // A medium without a live system.
    let plain = env.path().join("plain");
    write(&plain, "README", "no live system here\n");
    let plain_iso = env.path().join("plain.iso");
    mkisofs(&plain, &plain_iso);
    let r = run(k().args(["image", "import", "plain", "1"]).arg(&plain_iso));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no live squashfs on the medium"), "{}", r.stderr);

    // A truncated medium.
    let cut = env.path().join("cut.iso");
    let bytes = std::fs::read(&alt_iso).expect("iso");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let r = run(k().args(["image", "import", "cut", "1"]).arg(&cut));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("truncated?"), "{}", r.stderr);

    // A "squashfs" that is not one: refused before anything mounts it.
    let fake = env.path().join("fake");
    write(
        &fake,
        "live/filesystem.squashfs",
        "hsqs and then nothing a squashfs has\n",
    );
    let fake_iso = env.path().join("fake.iso");
    mkisofs(&fake, &fake_iso);
    let r = run(k().args(["image", "import", "fake", "1"]).arg(&fake_iso));
    assert_eq!(r.code, 0, "the medium itself is well formed: {}", r.stderr);
    let r = run(k()
        .args(["update", "--from", "fake@1", "--name", "fake-new", "--script"])
        .arg(&script)
        .arg("-o")
        .arg(&out));
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("/live/filesystem.squashfs: not a valid squashfs"),
        "{}",
        r.stderr
    );
    assert!(!out.join("fake-new.iso").exists());

    // An iso target needs an ISO source.
    let sq = env.path().join("tree.squashfs");
    busybox_squashfs(&sq);
    let r = run(k().args(["image", "import", "tree", "1"]).arg(&sq));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(k()
        .args([
            "update", "--from", "tree@1", "--name", "t", "--format", "iso", "--script",
        ])
        .arg(&script)
        .arg("-o")
        .arg(&out));
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("an iso target is remastered from an ISO source"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_iso_of_a_tree_without_a_kernel_says_so() {
    let repo = crate::support::examples_copy();
    write(
        repo.path(),
        "images/distro/nokernel.toml",
        "extends = [\"ve/minimal\"]\nkind = \"distro\"\noutputs = [\"iso\"]\n",
    );
    let out = repo.path().join("out");
    let r = run(kiln()
        .args(["build", "distro/nokernel", "-C"])
        .arg(repo.path())
        .arg("-o")
        .arg(&out));
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the root tree has no kernel (no boot/vmlinuz-*): install one, e.g. linux-image-amd64"),
        "{}",
        r.stderr
    );
    assert!(!out.join("distro-nokernel-1.0-1.kiln1.amd64.iso").exists());
}

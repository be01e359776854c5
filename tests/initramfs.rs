//! `rustlive initramfs` on a synthetic kernel modules tree: what goes in (modules with their
//! dependencies, the pruned index, declared firmware, CA, keys, shell, /init, /dev/console),
//! and that two builds give the same bytes for every compression. Hostile trees too: symlinks
//! that lead out of `--kmoddir` or `--firmware-dir`, FIFOs and devices as the index, a module
//! or a firmware file, a planted temporary beside the output.

mod support;

use rustlive::server::initramfs::{build, Compress, Options};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// An ELF64 file with the given `.modinfo` (what the builder reads firmware from).
fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
    let shstrtab = b"\0.shstrtab\0.modinfo\0";
    let mut f = vec![0u8; 0x40];
    f[0..6].copy_from_slice(b"\x7fELF\x02\x01");
    let data_off = f.len();
    f.extend_from_slice(shstrtab);
    let mi_off = f.len();
    f.extend_from_slice(modinfo);
    let shoff = f.len();
    for (name, off, size) in [
        (0u32, 0usize, 0usize),
        (1, data_off, shstrtab.len()),
        (11, mi_off, modinfo.len()),
    ] {
        let mut h = vec![0u8; 0x40];
        h[0..4].copy_from_slice(&name.to_le_bytes());
        h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
        h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
        f.extend_from_slice(&h);
    }
    f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    f[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
    f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
    f[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
    f
}

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// lib/modules/K with virtio_net (needing virtio, virtio_ring), e1000, tg3 (declaring two
/// firmware files, one present), ext4 (softdep on crypto-crc32c) and an unrelated module.
fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let k = root.join("modules");
    let m = |rel: &str, info: &str| write(&k.join(rel), &elf_with_modinfo(info.as_bytes()));
    m("kernel/drivers/net/virtio_net.ko", "name=virtio_net\0");
    m("kernel/drivers/virtio/virtio.ko", "name=virtio\0");
    m("kernel/drivers/virtio/virtio_ring.ko", "name=virtio_ring\0");
    m("kernel/drivers/virtio/virtio_pci.ko", "name=virtio_pci\0");
    m(
        "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
        "name=e1000\0",
    );
    m(
        "kernel/drivers/net/ethernet/broadcom/tg3.ko",
        "firmware=tigon/tg3.bin\0firmware=tigon/tg3_tso.bin\0",
    );
    m(
        "kernel/drivers/net/ethernet/realtek/r8169.ko",
        "name=r8169\0",
    );
    m("kernel/fs/ext4/ext4.ko", "name=ext4\0");
    m("kernel/crypto/crc32c_generic.ko", "name=crc32c_generic\0");
    m("kernel/sound/snd.ko", "name=snd\0");
    write(
        &k.join("modules.dep"),
        b"kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
kernel/drivers/net/ethernet/broadcom/tg3.ko:
kernel/drivers/net/ethernet/realtek/r8169.ko:
kernel/fs/ext4/ext4.ko:
kernel/crypto/crc32c_generic.ko:
kernel/sound/snd.ko:
",
    );
    write(
        &k.join("modules.alias"),
        b"alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v000010ECd00008168sv*sd*bc*sc*i* r8169
alias crypto-crc32c crc32c_generic
alias pci:v00008086d*sv*sd*bc04sc03i* snd
",
    );
    write(
        &k.join("modules.softdep"),
        b"softdep ext4 pre: crypto-crc32c\nsoftdep snd pre: x\n",
    );
    write(
        &k.join("modules.builtin"),
        b"kernel/drivers/block/loop.ko\nkernel/fs/squashfs/squashfs.ko\n",
    );
    write(&root.join("firmware/tigon/tg3.bin"), b"FIRMWARE");
    write(&root.join("ca.pem"), b"-----BEGIN CERTIFICATE-----\n");
    write(&root.join("keys/site.pub"), b"untrusted comment: k\nRWQ\n");
    write(&root.join("keys/README"), b"not a key");
    write(
        &root.join("keys/sealed/boot-server.pub"),
        b"untrusted comment: k\nRWQ\n",
    );
    // A static "executable": an ELF header with no program headers (so no PT_INTERP).
    let mut init = vec![0u8; 0x40];
    init[0..6].copy_from_slice(b"\x7fELF\x02\x01");
    write(&root.join("init"), &init);
    Tree { _dir: dir, root }
}

fn opts(t: &Tree, compress: Compress) -> Options {
    Options {
        kver: "6.1.0-test".into(),
        kmoddir: t.root.join("modules"),
        net_drivers: vec![
            "virtio_net".into(),
            "e1000".into(),
            "tg3".into(),
            "ice".into(),
        ],
        add_drivers: vec!["ext4".into()],
        firmware_dir: t.root.join("firmware"),
        ca: Some(t.root.join("ca.pem")),
        keys: t.root.join("keys"),
        shell: Some(t.root.join("init")),
        compress,
        init: t.root.join("init"),
    }
}

/// `cpio -it` of an uncompressed archive: the paths, in archive order.
fn cpio_list(path: &Path) -> Vec<String> {
    let out = Command::new("cpio")
        .args(["-it", "--quiet"])
        .stdin(std::fs::File::open(path).unwrap())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(String::from)
            .collect(),
        Ok(o) => panic!("cpio -it failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            rustlive::support::testing::skip(&format!(
                "cpio is not installed (scripts/install-deps.sh): {e}"
            ));
            Vec::new()
        }
    }
}

#[test]
fn contents_of_the_archive() {
    let t = tree();
    let out = t.root.join("out.cpio");
    let r = build(&opts(&t, Compress::None), &out).unwrap();
    assert_eq!(r.builtin, ["loop", "squashfs"]);
    assert!(r.absent.contains(&"ice".to_string()), "{:?}", r.absent);
    assert_eq!(r.firmware, ["tigon/tg3.bin"]);
    assert_eq!(r.firmware_missing, ["tigon/tg3_tso.bin"]);
    let pos = |m: &str| {
        r.modules
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("{m} in {:?}", r.modules))
    };
    assert!(pos("virtio_ring") < pos("virtio") && pos("virtio") < pos("virtio_net"));
    assert!(
        pos("crc32c_generic") < pos("ext4"),
        "soft pre-dependency first: {:?}",
        r.modules
    );
    assert!(!r.modules.contains(&"snd".to_string()) && !r.modules.contains(&"r8169".to_string()));

    let list = cpio_list(&out);
    if list.is_empty() {
        return;
    }
    for want in [
        "init",
        "dev/console",
        "bin/sh",
        "etc/rustlive/ca.pem",
        "etc/rustlive/keys/site.pub",
        "etc/rustlive/keys/sealed/boot-server.pub",
        "lib/firmware/tigon/tg3.bin",
        "lib/modules/6.1.0-test/kernel/drivers/net/virtio_net.ko",
        "lib/modules/6.1.0-test/kernel/crypto/crc32c_generic.ko",
        "lib/modules/6.1.0-test/modules.dep",
        "lib/modules/6.1.0-test/modules.alias",
        "lib/modules/6.1.0-test/modules.alias.rustlive-net",
        "sysroot",
        "proc",
    ] {
        assert!(
            list.iter().any(|p| p == want),
            "{want} missing from {list:?}"
        );
    }
    assert!(
        !list
            .iter()
            .any(|p| p.contains("snd.ko") || p.contains("README")),
        "{list:?}"
    );
    let mut sorted = list.clone();
    sorted.sort();
    assert_eq!(sorted, list, "entries are sorted");

    // The pruned index, read back through an extraction.
    let x = t.root.join("x");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(&x)
        .stdin(std::fs::File::open(&out).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    let m = x.join("lib/modules/6.1.0-test");
    let alias = std::fs::read_to_string(m.join("modules.alias")).unwrap();
    assert!(
        alias.contains("virtio_net") && alias.contains("crc32c_generic"),
        "{alias}"
    );
    assert!(
        !alias.contains("snd") && !alias.contains("r8169"),
        "{alias}"
    );
    let dep = std::fs::read_to_string(m.join("modules.dep")).unwrap();
    assert_eq!(dep.lines().count(), r.modules.len(), "{dep}");
    let soft = std::fs::read_to_string(m.join("modules.softdep")).unwrap();
    assert_eq!(soft, "softdep ext4 pre: crypto-crc32c\n");
    // Left-out network drivers stay nameable, for the "NIC without its driver" message.
    let hints = std::fs::read_to_string(m.join("modules.alias.rustlive-net")).unwrap();
    assert_eq!(hints, "alias pci:v000010ECd00008168sv*sd*bc*sc*i* r8169\n");
}

#[test]
fn two_builds_give_identical_bytes() {
    let t = tree();
    for (i, how) in [Compress::None, Compress::Gzip, Compress::Zstd, Compress::Xz]
        .into_iter()
        .enumerate()
    {
        let a = t.root.join(format!("a{i}"));
        let b = t.root.join(format!("b{i}"));
        build(&opts(&t, how), &a).unwrap();
        // Touch every input: mtimes must not leak into the archive.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(t.root.join("ca.pem"), b"-----BEGIN CERTIFICATE-----\n").unwrap();
        build(&opts(&t, how), &b).unwrap();
        let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert!(!a.is_empty());
        assert_eq!(a, b, "{how:?}");
    }
}

/// Compresses `rel` (under the tree's modules) as `ext` the way the kernel's
/// `modules_install` does, and renames it in modules.dep (as depmod would).
fn compress_module(t: &Tree, rel: &str, ext: &str) {
    use std::io::Write;
    let k = t.root.join("modules");
    let plain = std::fs::read(k.join(rel)).unwrap();
    let packed = match ext {
        "xz" => {
            let mut o = xz2::stream::LzmaOptions::new_preset(6).unwrap();
            o.dict_size(1 << 20);
            let mut f = xz2::stream::Filters::new();
            f.lzma2(&o);
            let s = xz2::stream::Stream::new_stream_encoder(&f, xz2::stream::Check::Crc32).unwrap();
            let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), s);
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::stream::encode_all(&plain[..], 19).unwrap(),
        _ => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        }
    };
    std::fs::remove_file(k.join(rel)).unwrap();
    write(&k.join(format!("{rel}.{ext}")), &packed);
    let dep = std::fs::read_to_string(k.join("modules.dep")).unwrap();
    let renamed: String = dep
        .split_inclusive(['\n', ' ', ':'])
        .map(|w| {
            let word = w.trim_end_matches(['\n', ' ', ':']);
            if word == rel {
                format!("{rel}.{ext}{}", &w[word.len()..])
            } else {
                w.to_string()
            }
        })
        .collect();
    write(&k.join("modules.dep"), renamed.as_bytes());
}

#[test]
fn compressed_modules_are_stored_decompressed_under_their_plain_names() {
    // The same modules as the plain tree, compressed (xz, zstd and gzip, tg3 with its firmware
    // list among them): the archive is the plain tree's, byte for byte, so modules.dep names
    // the decompressed files, in the dependencies too.
    let plain = tree();
    let packed = tree();
    for (rel, ext) in [
        ("kernel/drivers/net/virtio_net.ko", "xz"),
        ("kernel/drivers/virtio/virtio_ring.ko", "xz"),
        ("kernel/drivers/virtio/virtio.ko", "zst"),
        ("kernel/drivers/net/ethernet/broadcom/tg3.ko", "gz"),
        ("kernel/sound/snd.ko", "xz"),
    ] {
        compress_module(&packed, rel, ext);
    }
    let dep = std::fs::read_to_string(packed.root.join("modules/modules.dep")).unwrap();
    assert!(
        dep.contains("virtio_net.ko.xz: kernel/drivers/virtio/virtio.ko.zst kernel/drivers/virtio/virtio_ring.ko.xz\n"),
        "{dep}"
    );
    let (a, b) = (plain.root.join("a"), packed.root.join("b"));
    let ra = build(&opts(&plain, Compress::None), &a).unwrap();
    let rb = build(&opts(&packed, Compress::None), &b).unwrap();
    assert_eq!(ra.decompressed, 0);
    assert_eq!(rb.decompressed, 4, "snd is not selected");
    assert_eq!(
        rb.firmware,
        ["tigon/tg3.bin"],
        "read from the decompressed tg3"
    );
    assert_eq!(rb.modules, ra.modules);
    // The plain tree's paths differ only by the temporary directory, which is not in the archive.
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "the archive from the compressed tree differs from the plain tree's"
    );

    // A module that does not decompress stops the build, naming it.
    let k = packed
        .root
        .join("modules/kernel/drivers/virtio/virtio_ring.ko.xz");
    let bytes = std::fs::read(&k).unwrap();
    std::fs::write(&k, &bytes[..bytes.len() / 2]).unwrap();
    let e = build(&opts(&packed, Compress::None), &packed.root.join("c")).unwrap_err();
    let msg = rustlive::support::exit::report(&e);
    assert!(
        msg.contains("virtio_ring.ko.xz") && msg.contains("not valid xz data"),
        "{msg}"
    );
    assert!(!packed.root.join("c").exists(), "no partial output");
}

#[test]
fn unknown_added_driver_and_dynamic_init_are_errors() {
    let t = tree();
    let mut o = opts(&t, Compress::None);
    o.add_drivers = vec!["no_such_nic".into()];
    let e = build(&o, &t.root.join("o")).unwrap_err();
    assert!(
        e.to_string().contains("no_such_nic") && e.to_string().contains("6.1.0-test"),
        "{e}"
    );
    let mut o = opts(&t, Compress::None);
    // This test binary (host target, glibc) is dynamically linked.
    o.shell = Some(std::env::current_exe().unwrap());
    let e = build(&o, &t.root.join("o")).unwrap_err();
    assert!(e.to_string().contains("not a static executable"), "{e}");
    assert!(!t.root.join("o").exists(), "no partial output");
}

/// The archive's paths and contents, from `cpio -i` into a fresh directory.
fn extract(archive: &Path, into: &Path) -> PathBuf {
    std::fs::create_dir_all(into).unwrap();
    let st = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(into)
        .stdin(std::fs::File::open(archive).unwrap())
        .status()
        .expect("cpio (Debian package cpio) is installed by scripts/install-deps.sh");
    assert!(st.success());
    into.to_path_buf()
}

/// Item 11: `-o planted.img` never writes through a planted temporary name (the old
/// `planted.part`, and the names beside it).
#[test]
fn the_output_is_not_written_through_a_planted_temporary() {
    let t = tree();
    let victim = t.root.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    for planted in ["planted.part", "planted.img.part", ".planted.img.part"] {
        std::os::unix::fs::symlink(&victim, t.root.join(planted)).unwrap();
    }
    let out = t.root.join("planted.img");
    build(&opts(&t, Compress::None), &out).unwrap();
    assert!(
        std::fs::read(&victim).unwrap() == b"precious",
        "written through a planted temporary"
    );
    assert!(out.symlink_metadata().unwrap().file_type().is_file());
    let mode = std::os::unix::fs::PermissionsExt::mode(&out.metadata().unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o644);
}

/// Item 12: nothing from outside `--kmoddir` or `--firmware-dir` gets in through a symlinked
/// module file, module directory or firmware file, nor through a firmware name with `..`.
#[test]
fn symlinks_leading_out_of_the_trees_are_refused() {
    let outside_bytes = b"OUTSIDE-THE-TREE";
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Box<dyn Fn(&Tree, &Path)>)> = vec![
        (
            "a module file",
            Box::new(|t: &Tree, outside: &Path| {
                let m = t.root.join("modules/kernel/drivers/net/virtio_net.ko");
                std::fs::rename(&m, outside.join("virtio_net.ko")).unwrap();
                std::os::unix::fs::symlink(outside.join("virtio_net.ko"), &m).unwrap();
            }),
        ),
        (
            "a module file, by a relative link",
            Box::new(|t: &Tree, outside: &Path| {
                let m = t.root.join("modules/kernel/drivers/net/virtio_net.ko");
                std::fs::rename(&m, outside.join("virtio_net.ko")).unwrap();
                // modules/kernel/drivers/net → the tree's parent's outside/.
                std::os::unix::fs::symlink("../../../../outside/virtio_net.ko", &m).unwrap();
            }),
        ),
        (
            "a module directory",
            Box::new(|t: &Tree, outside: &Path| {
                let d = t.root.join("modules/kernel/drivers/virtio");
                std::fs::rename(&d, outside.join("virtio")).unwrap();
                std::os::unix::fs::symlink(outside.join("virtio"), &d).unwrap();
            }),
        ),
        (
            "a firmware file",
            Box::new(|t: &Tree, outside: &Path| {
                let f = t.root.join("firmware/tigon/tg3.bin");
                std::fs::remove_file(&f).unwrap();
                std::os::unix::fs::symlink(outside.join("secret"), &f).unwrap();
            }),
        ),
        (
            "a firmware directory",
            Box::new(|t: &Tree, outside: &Path| {
                let d = t.root.join("firmware/tigon");
                std::fs::remove_dir_all(&d).unwrap();
                std::fs::write(outside.join("tg3.bin"), "OUTSIDE-THE-TREE").unwrap();
                std::os::unix::fs::symlink(outside, &d).unwrap();
            }),
        ),
        (
            "a firmware name that climbs out",
            Box::new(|t: &Tree, _: &Path| {
                write(
                    &t.root
                        .join("modules/kernel/drivers/net/ethernet/broadcom/tg3.ko"),
                    &elf_with_modinfo(b"firmware=../outside/secret\0"),
                );
            }),
        ),
    ];
    let mut failed = Vec::new();
    for (name, setup) in cases {
        let t = tree();
        let outside = t.root.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), outside_bytes).unwrap();
        setup(&t, &outside);
        let out = t.root.join("out.cpio");
        match build(&opts(&t, Compress::None), &out) {
            Err(e) => {
                let chain = format!(
                    "{e}: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                );
                if !chain.contains("outside") {
                    failed.push(format!("{name}: {chain}"));
                }
                if out.exists() {
                    failed.push(format!("{name}: written"));
                }
            }
            Ok(_) => {
                let archive = std::fs::read(&out).unwrap();
                let leaked = archive
                    .windows(outside_bytes.len())
                    .any(|w| w == outside_bytes);
                failed.push(format!(
                    "{name}: built (the outside file's bytes in it: {leaked})"
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Kernel and firmware trees have symlinks of their own (linux-firmware's compatibility names,
/// a module directory moved): a link that stays inside its tree, relative or absolute, is
/// followed there.
#[test]
fn symlinks_inside_the_trees_are_followed_there() {
    let t = tree();
    let k = t.root.join("modules");
    // A module directory moved and linked back, relatively.
    std::fs::create_dir_all(k.join("moved")).unwrap();
    std::fs::rename(k.join("kernel/drivers/virtio"), k.join("moved/virtio")).unwrap();
    std::os::unix::fs::symlink("../../moved/virtio", k.join("kernel/drivers/virtio")).unwrap();
    // A firmware file under another name, linked by its absolute path inside the tree.
    let fw = t.root.join("firmware");
    std::fs::create_dir_all(fw.join("real")).unwrap();
    std::fs::rename(fw.join("tigon/tg3.bin"), fw.join("real/tg3.bin")).unwrap();
    std::os::unix::fs::symlink(fw.join("real/tg3.bin"), fw.join("tigon/tg3.bin")).unwrap();
    let out = t.root.join("out.cpio");
    let r = build(&opts(&t, Compress::None), &out).unwrap();
    assert!(r.modules.contains(&"virtio".to_string()), "{:?}", r.modules);
    assert_eq!(r.firmware, ["tigon/tg3.bin"]);
    let x = extract(&out, &t.root.join("x"));
    assert_eq!(
        std::fs::read(x.join("lib/firmware/tigon/tg3.bin")).unwrap(),
        b"FIRMWARE"
    );
    let ko = x.join("lib/modules/6.1.0-test/kernel/drivers/virtio/virtio.ko");
    assert!(ko.symlink_metadata().unwrap().file_type().is_file());
}

/// `rustlive initramfs` on the test tree, under a bound.
fn initramfs_cli(t: &Tree, out: &Path) -> support::Bounded {
    let o = opts(t, Compress::None);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rustlive"));
    cmd.arg("initramfs")
        .arg("-o")
        .arg(out)
        .args(["--kver", &o.kver, "--compress", "none"])
        .arg("--kmoddir")
        .arg(&o.kmoddir)
        .arg("--firmware-dir")
        .arg(&o.firmware_dir)
        .arg("--ca")
        .arg(o.ca.as_ref().unwrap())
        .arg("--keys")
        .arg(&o.keys)
        .arg("--init")
        .arg(&o.init)
        .arg("--net-drivers")
        .arg(o.net_drivers.join(","))
        .env("RUSTLIVE_LOG", "stderr");
    support::run_bounded(&mut cmd, Duration::from_secs(10))
}

/// Item 13: a FIFO, a device node or a link to `/dev/zero` as `modules.dep`, a module or a
/// firmware file: refused at once, naming the file; nothing written.
#[test]
fn special_files_in_the_trees_are_refused_quickly() {
    let t = tree();
    let r = initramfs_cli(&t, &t.root.join("cli.img"));
    assert_eq!(r.code, Some(0), "the tree builds: {}", r.output);
    let mut failed = Vec::new();
    let targets = [
        "modules/modules.dep",
        "modules/modules.alias",
        "modules/kernel/drivers/net/virtio_net.ko",
        "firmware/tigon/tg3.bin",
        "keys/site.pub",
    ];
    for target in targets {
        for kind in ["fifo", "device", "link to /dev/zero"] {
            let t = tree();
            let p = t.root.join(target);
            std::fs::remove_file(&p).unwrap();
            match kind {
                "fifo" => rustlive::sys::fs::make_fifo(&p, 0o600).unwrap(),
                "device" => {
                    if !rustlive::support::testing::is_root() {
                        rustlive::support::testing::skip("making a device node needs root");
                        continue;
                    }
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &p,
                        rustix::fs::FileType::CharacterDevice,
                        rustix::fs::Mode::from_raw_mode(0o600),
                        rustix::fs::makedev(1, 5),
                    )
                    .unwrap();
                }
                _ => std::os::unix::fs::symlink("/dev/zero", &p).unwrap(),
            }
            let out = t.root.join("cli.img");
            let r = initramfs_cli(&t, &out);
            let leaf = Path::new(target).file_name().unwrap().to_str().unwrap();
            if r.code.is_none() {
                failed.push(format!(
                    "{target} as a {kind}: still running after {:?}, killed",
                    r.elapsed
                ));
            } else if r.code != Some(2)
                || !r.output.contains(leaf)
                // Refused for what it is, not, say, by running out of memory on it.
                || !["not a regular file", "leads outside"]
                    .iter()
                    .any(|w| r.output.contains(w))
                || out.exists()
            {
                failed.push(format!(
                    "{target} as a {kind}: exit {:?}, written: {}: {}",
                    r.code,
                    out.exists(),
                    r.output
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Issue 21, item 11: the summary names the firmware the modules declare that the firmware
/// directory lacks; a `--ca` that is not there is one sentence naming it and saying what it is,
/// before any module is read, and nothing is written.
#[test]
fn missing_firmware_is_named_and_a_missing_ca_says_what_it_is() {
    let t = tree();
    let out = t.root.join("cli.img");
    let r = initramfs_cli(&t, &out);
    assert_eq!(r.code, Some(0), "{}", r.output);
    assert!(
        r.output
            .contains("1 declared but not in the firmware directory: tigon/tg3_tso.bin)"),
        "{}",
        r.output
    );
    std::fs::remove_file(&out).unwrap();
    let ca = opts(&t, Compress::None).ca.unwrap();
    std::fs::remove_file(&ca).unwrap();
    let r = initramfs_cli(&t, &out);
    assert_eq!(r.code, Some(2), "{}", r.output);
    let want = format!(
        "--ca {}: no such file; it is the PEM bundle of the CAs",
        ca.display()
    );
    assert!(r.output.contains(&want), "{}", r.output);
    assert!(
        r.output.contains("verify the https servers"),
        "{}",
        r.output
    );
    assert_eq!(r.output.lines().count(), 1, "one line: {}", r.output);
    assert!(!out.exists());
}

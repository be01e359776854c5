//! `rustlive initramfs` on a synthetic kernel modules tree: what goes in (modules with their
//! dependencies, the pruned index, declared firmware, CA, keys, shell, /init, /dev/console),
//! and that two builds give the same bytes for every compression.

use rustlive::server::initramfs::{build, Compress, Options};
use std::path::{Path, PathBuf};
use std::process::Command;

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

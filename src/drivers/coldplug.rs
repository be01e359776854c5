//! Loading the drivers for the devices present, as udev's coldplug would, when rustlive is PID
//! 1: every `/sys/bus/*/devices/*/modalias` is matched against the initramfs's
//! `modules.alias`, the matching modules are loaded (dependencies first, each once), and the
//! scan repeats while loading created new devices (virtio_pci → the virtio-net device).

/// PCI aliases of the kernel's network drivers that `rustlive initramfs` left out, so that a
/// node with a NIC but no driver for it can name the module to add. The builder writes it; the
/// node reads it, so the name lives on the node's side.
pub const NET_HINTS_FILE: &str = "modules.alias.rustlive-net";

use crate::drivers::kmod::{self, Failure};
use crate::drivers::modalias::{self, AliasTable};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bounded: a driver that keeps creating devices cannot keep PID 1 here forever.
const MAX_PASSES: usize = 6;

/// A network controller that no driver claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unclaimed {
    /// The PCI address (`0000:00:03.0`).
    pub device: String,
    pub pci_id: Option<String>,
    pub modalias: String,
    /// The kernel's module for it, from the aliases of the NIC drivers left out at build time.
    pub module: Option<String>,
    /// Its driver is in the initramfs but did not load: which and why (then `module` is
    /// not looked at).
    pub failed: Option<Failure>,
}

impl std::fmt::Display for Unclaimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pci = self.pci_id.as_deref().unwrap_or("?");
        if let Some(failed) = &self.failed {
            // Not "no driver": the driver is here and the kernel said why it did not load.
            return write!(
                f,
                "network device {} (PCI {pci}, modalias {}): its driver {} is in this initramfs but did not load: {}",
                self.device, self.modalias, failed.requested, failed.reason
            );
        }
        write!(
            f,
            "network device {} (PCI {pci}, modalias {}) has no driver in this initramfs",
            self.device, self.modalias
        )?;
        match &self.module {
            Some(m) => write!(
                f,
                "; its driver is {m}: rebuild with `rustlive initramfs --add-drivers {m}`"
            ),
            None => write!(
                f,
                "; rebuild with `rustlive initramfs --add-drivers MODULE` naming its driver"
            ),
        }
    }
}

/// `(device path, modalias)` of every device on every bus under `sys` (`/sys`), sorted.
pub fn modaliases(sys: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(buses) = std::fs::read_dir(sys.join("bus")) else {
        return out;
    };
    for bus in buses.flatten() {
        let Ok(devs) = std::fs::read_dir(bus.path().join("devices")) else {
            continue;
        };
        for d in devs.flatten() {
            if let Ok(a) = std::fs::read_to_string(d.path().join("modalias")) {
                let a = a.trim();
                if !a.is_empty() {
                    out.push((d.path(), a.to_string()));
                }
            }
        }
    }
    out.sort();
    out
}

/// The modules to load for `aliases` (modalias strings), in order, without those already
/// `tried` and without blacklisted ones. Pure.
pub fn plan(
    table: &AliasTable,
    aliases: &[String],
    blacklist: &[String],
    tried: &BTreeSet<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in aliases {
        for m in table.modules_for(a) {
            if !tried.contains(&m) && !blacklist.contains(&m) && !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

/// PCI network controllers (class 0x02xxxx) under `sys` with no bound driver; for each, the
/// failure of a module of `table` that matches it, if one is in `failed`.
pub fn unclaimed_nics(
    sys: &Path,
    hints: &AliasTable,
    table: &AliasTable,
    failed: &[Failure],
) -> Vec<Unclaimed> {
    let mut out = Vec::new();
    let Ok(devs) = std::fs::read_dir(sys.join("bus/pci/devices")) else {
        return out;
    };
    let mut devs: Vec<PathBuf> = devs.flatten().map(|d| d.path()).collect();
    devs.sort();
    for d in devs {
        let class = std::fs::read_to_string(d.join("class")).unwrap_or_default();
        if !class.trim().starts_with("0x02") || d.join("driver").exists() {
            continue;
        }
        let modalias = std::fs::read_to_string(d.join("modalias"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let failed = table
            .modules_for(&modalias)
            .into_iter()
            .find_map(|m| failed.iter().find(|f| f.requested == m).cloned());
        out.push(Unclaimed {
            failed,
            device: d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pci_id: modalias::pci_id(&modalias),
            module: hints.modules_for(&modalias).into_iter().next(),
            modalias,
        });
    }
    out
}

/// What coldplug did.
#[derive(Debug, Default)]
pub struct Report {
    pub loaded: Vec<String>,
    /// Modules that are in the initramfs but did not load.
    pub failed: Vec<Failure>,
    pub unclaimed: Vec<Unclaimed>,
}

/// Loads `extra` (rd.rustlive.drivers) and the drivers of every device present, from
/// `/lib/modules/$(uname -r)`, honouring `blacklist` (rd.driver.blacklist); then lets a
/// [`Background`] waiting for them go.
pub fn load_drivers(extra: &[String], blacklist: &[String]) -> Report {
    let report = load_devices_drivers(extra, blacklist);
    mark_drivers_loaded();
    report
}

fn load_devices_drivers(extra: &[String], blacklist: &[String]) -> Report {
    let mut report = Report::default();
    let sys = Path::new("/sys");
    let dir = match kmod::modules_dir() {
        Ok(dir) => dir,
        Err(e) => {
            log::warn!("{}; not loading drivers", crate::support::exit::report(&e));
            return report;
        }
    };
    let table =
        AliasTable::parse(&std::fs::read_to_string(dir.join("modules.alias")).unwrap_or_default());
    let hints =
        AliasTable::parse(&std::fs::read_to_string(dir.join(NET_HINTS_FILE)).unwrap_or_default());
    let mut tried: BTreeSet<String> = BTreeSet::new();
    let mut first: Vec<String> = Vec::new();
    for m in extra {
        if blacklist.contains(m) {
            log::warn!(
                "{m} is both in rd.rustlive.drivers and rd.driver.blacklist; not loading it"
            );
        } else {
            first.push(m.clone());
        }
    }
    for pass in 0..MAX_PASSES {
        let aliases: Vec<String> = modaliases(sys).into_iter().map(|(_, a)| a).collect();
        let mut todo = if pass == 0 {
            std::mem::take(&mut first)
        } else {
            Vec::new()
        };
        for m in plan(&table, &aliases, blacklist, &tried) {
            if !todo.contains(&m) {
                todo.push(m);
            }
        }
        todo.retain(|m| !tried.contains(m));
        if todo.is_empty() {
            break;
        }
        log::debug!(
            "coldplug pass {}: {}",
            pass.saturating_add(1),
            todo.join(", ")
        );
        let names: Vec<&str> = todo.iter().map(String::as_str).collect();
        match kmod::load(&dir, &names) {
            Ok(done) => report.failed.extend(done.failed),
            Err(e) => {
                log::warn!("{}", crate::support::exit::report(&e));
                break;
            }
        }
        tried.extend(todo.iter().cloned());
        report.loaded.extend(todo);
    }
    report.unclaimed = unclaimed_nics(sys, &hints, &table, &report.failed);
    report
}

/// Set when [`load_drivers`] has loaded the drivers of the devices present (the NIC's among
/// them): the modules that go after them ([`Background`]) wait for it.
static DRIVERS_LOADED: Mutex<bool> = Mutex::new(false);
static DRIVERS_LOADED_CHANGED: Condvar = Condvar::new();

fn mark_drivers_loaded() {
    let mut done = DRIVERS_LOADED.lock().unwrap_or_else(|e| e.into_inner());
    *done = true;
    DRIVERS_LOADED_CHANGED.notify_all();
}

/// Waits until [`load_drivers`] is done, at most `limit`.
fn wait_for_drivers(limit: Duration) {
    let done = DRIVERS_LOADED.lock().unwrap_or_else(|e| e.into_inner());
    let waited = DRIVERS_LOADED_CHANGED.wait_timeout_while(done, limit, |done| !*done);
    if waited.is_ok_and(|(_, t)| t.timed_out()) {
        log::debug!(
            "the devices' drivers are not loaded after {} s; loading the other modules anyway",
            limit.as_secs()
        );
    }
}

/// Modules loading in a thread of their own once the devices' drivers are loaded (the block
/// and filesystem modules, after the NIC's driver and while the network comes up);
/// [`Background::wait`] before they are needed.
#[derive(Debug)]
pub struct Background {
    thread: Option<std::thread::JoinHandle<()>>,
    names: &'static [&'static str],
    started: Instant,
}

/// How long the thread waits for [`load_drivers`] before loading its modules anyway (a boot
/// that never brings the network up).
const AFTER_DRIVERS_LIMIT: Duration = Duration::from_secs(10);

impl Background {
    /// Starts a thread that loads `names` (as [`kmod::load`]) from the running kernel's
    /// modules as soon as [`load_drivers`] has loaded the devices' drivers, at the lowest CPU
    /// priority: on a one-CPU node it takes the time the boot spends waiting (for carrier, a
    /// DHCP answer, the image's bytes), not the time the NIC's driver needs.
    pub fn after_drivers(names: &'static [&'static str]) -> Background {
        let spawned = std::thread::Builder::new()
            .name("modules".into())
            .spawn(move || {
                if let Err(e) = crate::sys::process::lower_thread_priority() {
                    log::debug!("cannot lower the module loader's priority: {e}");
                }
                wait_for_drivers(AFTER_DRIVERS_LIMIT);
                load_now(names);
            });
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                log::warn!(
                    "cannot start a thread for the filesystem modules ({e}); they load when needed"
                );
                None
            }
        };
        Background {
            thread,
            names,
            started: Instant::now(),
        }
    }

    /// Waits until the modules are loaded (or failed: the stage that needs one reports what
    /// it lacks). When the thread could not start, loads them here.
    pub fn wait(self) {
        match self.thread {
            Some(t) => {
                if t.join().is_err() {
                    log::warn!("the module loader thread panicked");
                }
                log::debug!(
                    "modules loaded beside the network in {:.1} s",
                    self.started.elapsed().as_secs_f64()
                );
            }
            None => load_now(self.names),
        }
    }
}

/// [`kmod::load`] of `names` from the running kernel's modules, errors logged.
fn load_now(names: &[&str]) {
    match kmod::modules_dir() {
        Ok(dir) if dir.is_dir() => {
            if let Err(e) = kmod::load(&dir, names) {
                log::warn!("{}", crate::support::exit::report(&e));
            }
        }
        Ok(dir) => log::debug!("no {}; not loading modules", dir.display()),
        Err(e) => log::warn!("{}", crate::support::exit::report(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("testdata/modules.alias");

    #[test]
    fn plan_matches_blacklists_and_skips_tried() {
        let t = AliasTable::parse(FIXTURE);
        let devs = vec![
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_string(),
            "virtio:d00000001v00001AF4".to_string(),
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00".to_string(),
            "acpi:PNP0A03:".to_string(),
        ];
        assert_eq!(
            plan(&t, &devs, &[], &BTreeSet::new()),
            ["virtio_pci", "virtio_net", "e1000"]
        );
        assert_eq!(
            plan(&t, &devs, &["e1000".into()], &BTreeSet::new()),
            ["virtio_pci", "virtio_net"]
        );
        let tried: BTreeSet<String> = ["virtio_pci".to_string()].into();
        assert_eq!(plan(&t, &devs, &[], &tried), ["virtio_net", "e1000"]);
    }

    #[test]
    fn sysfs_scan_and_unclaimed_nics() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        let dev = |bus: &str, name: &str, alias: &str, class: Option<&str>, driver: bool| {
            let p = sys.join("bus").join(bus).join("devices").join(name);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("modalias"), format!("{alias}\n")).unwrap();
            if let Some(c) = class {
                std::fs::write(p.join("class"), format!("{c}\n")).unwrap();
            }
            if driver {
                std::fs::create_dir(p.join("driver")).unwrap();
            }
        };
        let e1000 = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00";
        dev("pci", "0000:00:03.0", e1000, Some("0x020000"), false);
        dev(
            "pci",
            "0000:00:01.0",
            "pci:v00008086d00007000sv00001AF4sd00001100bc06sc01i00",
            Some("0x060100"),
            false,
        );
        dev(
            "pci",
            "0000:00:04.0",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
            Some("0x020000"),
            true,
        );
        dev("virtio", "virtio0", "virtio:d00000001v00001AF4", None, true);
        let all = modaliases(sys);
        assert_eq!(all.len(), 4);
        let hints = AliasTable::parse("alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n");
        let none = AliasTable::default();
        let u = unclaimed_nics(sys, &hints, &none, &[]);
        assert_eq!(u.len(), 1, "{u:?}");
        assert_eq!(u[0].device, "0000:00:03.0");
        assert_eq!(u[0].pci_id.as_deref(), Some("8086:100e"));
        let msg = u[0].to_string();
        assert!(msg.contains("8086:100e") && msg.contains(e1000), "{msg}");
        assert!(msg.contains("--add-drivers e1000"), "{msg}");
        let no_hint = unclaimed_nics(sys, &none, &none, &[]);
        assert!(no_hint[0].to_string().contains("--add-drivers MODULE"));
        // The driver is there but did not load: said as that, never as a missing driver.
        let failed = [Failure {
            requested: "e1000".into(),
            reason: "cannot load module e1000 from /lib/modules/k/e1000.ko.xz: Operation not supported (os error 95)".into(),
        }];
        let table = AliasTable::parse(FIXTURE);
        let u = unclaimed_nics(sys, &hints, &table, &failed);
        let msg = u[0].to_string();
        assert_eq!(u[0].failed.as_ref(), failed.first());
        assert!(
            msg.contains("its driver e1000 is in this initramfs but did not load")
                && msg.contains("e1000.ko.xz: Operation not supported (os error 95)")
                && msg.contains("8086:100e"),
            "{msg}"
        );
        assert!(
            !msg.contains("has no driver") && !msg.contains("--add-drivers"),
            "{msg}"
        );
        // Another module's failure is not this device's.
        let other = [Failure {
            requested: "igb".into(),
            reason: "x".into(),
        }];
        assert!(unclaimed_nics(sys, &hints, &table, &other)[0]
            .failed
            .is_none());
    }
}

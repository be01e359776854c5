//! Owner and group names resolved against the NEW root's `/etc/passwd` and `/etc/group`.
//!
//! The initramfs has its own, much shorter, account files; a service user such as `munge` exists
//! only in the image, and its uid is whatever the image's packages chose. So names are looked up
//! in the files of the assembled root (read by [`super::write::RootDir`] without following
//! symlinks), never through the initramfs' NSS.

use std::collections::HashMap;
use std::fmt;

/// An owner or group as the bundle gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Name(String),
    Num(u32),
}

impl Id {
    /// A name as `useradd` accepts it (`[A-Za-z0-9_][A-Za-z0-9_.-]*$?`, at most 32 bytes), or a
    /// decimal number. `None` for anything else.
    pub fn parse(s: &str) -> Option<Id> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<u32>()
                .ok()
                .filter(|n| *n != u32::MAX)
                .map(Id::Num);
        }
        let body = s.strip_suffix('$').unwrap_or(s);
        let mut bytes = body.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        (first_ok && rest_ok && s.len() <= 32).then(|| Id::Name(s.to_string()))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Name(n) => write!(f, "\"{n}\""),
            Id::Num(n) => write!(f, "{n}"),
        }
    }
}

/// The user and group tables of a root filesystem.
#[derive(Debug, Default, Clone)]
pub struct Accounts {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

impl Accounts {
    /// Parses the text of `/etc/passwd` and `/etc/group`. Malformed lines, comments and NIS
    /// `+`/`-` lines are skipped; the first line for a name wins, as with `getpwnam`.
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        Accounts {
            users: table(passwd),
            groups: table(group),
        }
    }

    /// The uid of `id`. `root` is 0 even when the image has no passwd file.
    pub fn uid(&self, id: &Id) -> Option<u32> {
        lookup(&self.users, id)
    }

    /// The gid of `id`. `root` is 0 even when the image has no group file.
    pub fn gid(&self, id: &Id) -> Option<u32> {
        lookup(&self.groups, id)
    }
}

fn lookup(table: &HashMap<String, u32>, id: &Id) -> Option<u32> {
    match id {
        Id::Num(n) => Some(*n),
        Id::Name(n) => table.get(n).copied().or_else(|| (n == "root").then_some(0)),
    }
}

/// `name:password:ID:…` lines into a name → ID map (both files share this layout).
fn table(text: &str) -> HashMap<String, u32> {
    let mut map = HashMap::new();
    for line in text.lines() {
        if line.starts_with(['#', '+', '-']) {
            continue;
        }
        let mut f = line.split(':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(id) = id.parse::<u32>() else { continue };
        if !name.is_empty() {
            map.entry(name.to_string()).or_insert(id);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
# comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
munge:x:998:995:MUNGE:/run/munge:/sbin/nologin
broken line
bad:x:notanumber:1::/:
munge:x:5000:5000:second munge is ignored:/:/bin/sh
+nisuser::::::
machine$:x:4000:4000::/:/sbin/nologin
";
    const GROUP: &str = "root:x:0:
munge:x:995:
ssh_keys:x:994:
";

    fn accounts() -> Accounts {
        Accounts::parse(PASSWD, GROUP)
    }

    fn name(s: &str) -> Id {
        Id::Name(s.into())
    }

    #[test]
    fn resolves_names_from_the_files() {
        let a = accounts();
        assert_eq!(a.uid(&name("munge")), Some(998));
        assert_eq!(a.uid(&name("daemon")), Some(1));
        assert_eq!(a.uid(&name("machine$")), Some(4000));
        assert_eq!(a.gid(&name("munge")), Some(995));
        assert_eq!(a.gid(&name("ssh_keys")), Some(994));
    }

    #[test]
    fn users_and_groups_are_separate_tables() {
        let a = accounts();
        assert_eq!(a.gid(&name("daemon")), None);
        assert_eq!(a.uid(&name("ssh_keys")), None);
    }

    #[test]
    fn unknown_and_malformed_names_do_not_resolve() {
        let a = accounts();
        for n in ["slurm", "bad", "nisuser", "+nisuser", "broken line", ""] {
            assert_eq!(a.uid(&name(n)), None, "{n}");
        }
    }

    #[test]
    fn numbers_pass_through_and_root_is_always_zero() {
        let empty = Accounts::default();
        assert_eq!(empty.uid(&Id::Num(1234)), Some(1234));
        assert_eq!(empty.gid(&Id::Num(0)), Some(0));
        assert_eq!(empty.uid(&name("root")), Some(0));
        assert_eq!(empty.gid(&name("root")), Some(0));
        assert_eq!(empty.uid(&name("munge")), None);
    }

    #[test]
    fn id_syntax() {
        assert_eq!(Id::parse("munge"), Some(name("munge")));
        assert_eq!(Id::parse("_apt"), Some(name("_apt")));
        assert_eq!(Id::parse("host$"), Some(name("host$")));
        assert_eq!(Id::parse("a.b-c"), Some(name("a.b-c")));
        assert_eq!(Id::parse("0"), Some(Id::Num(0)));
        assert_eq!(Id::parse("4294967294"), Some(Id::Num(4294967294)));
        for bad in [
            "",
            "-x",
            ".x",
            "a b",
            "a:b",
            "a/b",
            "$",
            "a$b",
            "4294967295",
            "99999999999",
            &"a".repeat(33),
        ] {
            assert_eq!(Id::parse(bad), None, "{bad:?}");
        }
    }
}

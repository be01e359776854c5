//! The `.modinfo` section of a kernel module (what `modinfo -F firmware` prints), read from the
//! ELF file itself so the builder needs no kmod tools. Pure; every offset from the file is
//! checked, since a truncated or foreign file must give an error, not a panic.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModinfoError {
    #[error("not a 64-bit little-endian ELF file")]
    NotElf,
    #[error("truncated or inconsistent ELF section table")]
    Truncated,
    #[error("no .modinfo section")]
    NoModinfo,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], off: usize) -> Option<usize> {
    let v = u64::from_le_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?);
    usize::try_from(v).ok()
}

/// The bytes of the section called `name`.
fn section<'a>(elf: &'a [u8], name: &str) -> Result<&'a [u8], ModinfoError> {
    if elf.get(0..6) != Some(b"\x7fELF\x02\x01") {
        return Err(ModinfoError::NotElf);
    }
    let t = ModinfoError::Truncated;
    let shoff = u64_at(elf, 0x28).ok_or(t)?;
    let shentsize = usize::from(u16_at(elf, 0x3a).ok_or(ModinfoError::Truncated)?);
    let shnum = usize::from(u16_at(elf, 0x3c).ok_or(ModinfoError::Truncated)?);
    let shstrndx = usize::from(u16_at(elf, 0x3e).ok_or(ModinfoError::Truncated)?);
    if shentsize < 0x40 {
        return Err(ModinfoError::Truncated);
    }
    // (name offset, file offset, size) of section i.
    let header = |i: usize| -> Option<(usize, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            usize::try_from(u32_at(elf, h)?).ok()?,
            u64_at(elf, h.checked_add(0x18)?)?,
            u64_at(elf, h.checked_add(0x20)?)?,
        ))
    };
    let bytes = |off: usize, size: usize| elf.get(off..off.checked_add(size)?);
    let (_, stroff, strsize) = header(shstrndx).ok_or(ModinfoError::Truncated)?;
    let strtab = bytes(stroff, strsize).ok_or(ModinfoError::Truncated)?;
    for i in 0..shnum {
        let (nameoff, off, size) = header(i).ok_or(ModinfoError::Truncated)?;
        let n = strtab.get(nameoff..).ok_or(ModinfoError::Truncated)?;
        let n = n.split(|&b| b == 0).next().unwrap_or_default();
        if n == name.as_bytes() {
            return bytes(off, size).ok_or(ModinfoError::Truncated);
        }
    }
    Err(ModinfoError::NoModinfo)
}

/// Every `key=value` of the module's `.modinfo`, in order.
pub fn modinfo(elf: &[u8]) -> Result<Vec<(String, String)>, ModinfoError> {
    let sec = section(elf, ".modinfo")?;
    Ok(sec
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let s = std::str::from_utf8(kv).ok()?;
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// The firmware files the module declares (`MODULE_FIRMWARE`).
pub fn firmware(elf: &[u8]) -> Result<Vec<String>, ModinfoError> {
    Ok(modinfo(elf)?
        .into_iter()
        .filter(|(k, _)| k == "firmware")
        .map(|(_, v)| v)
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal ELF64 with a section table holding `.shstrtab` and `.modinfo`.
    pub(crate) fn tiny_module(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.modinfo\0";
        let mut f = vec![0u8; 0x40];
        f[0..6].copy_from_slice(b"\x7fELF\x02\x01");
        let data_off = f.len();
        f.extend_from_slice(shstrtab);
        let mi_off = f.len();
        f.extend_from_slice(modinfo);
        let shoff = f.len();
        let mut sh = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; 0x40];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&h);
        };
        sh(0, 0, 0);
        sh(1, data_off, shstrtab.len());
        sh(11, mi_off, modinfo.len());
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        f
    }

    #[test]
    fn reads_firmware_entries() {
        let m = tiny_module(b"license=GPL\0firmware=e100/d101m_ucode.bin\0firmware=e100/d102e_ucode.bin\0name=e100\0");
        assert_eq!(
            firmware(&m).unwrap(),
            ["e100/d101m_ucode.bin", "e100/d102e_ucode.bin"]
        );
        assert_eq!(modinfo(&m).unwrap().len(), 4);
    }

    #[test]
    fn foreign_and_truncated_files_are_errors() {
        assert_eq!(firmware(b"hello"), Err(ModinfoError::NotElf));
        let m = tiny_module(b"firmware=x\0");
        // Inside the ELF header, inside .shstrtab, inside the last section header's size field.
        for cut in [0x30, 0x50, m.len() - 0x40 + 0x24] {
            assert!(firmware(&m[..cut]).is_err(), "cut at {cut}");
        }
        let mut no = tiny_module(b"x=y\0");
        // Rename .modinfo to .modinfX.
        let pos = no.windows(8).position(|w| w == b".modinfo").unwrap();
        no[pos + 7] = b'X';
        assert_eq!(firmware(&no), Err(ModinfoError::NoModinfo));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = firmware(&bytes);
            if bytes.len() >= 6 {
                bytes[0..6].copy_from_slice(b"\x7fELF\x02\x01");
            }
            let _ = firmware(&bytes);
        }
    }
}

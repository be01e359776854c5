//! Big-endian TPM wire encoding: a writer, and a reader that never panics on hostile input
//! (every read is bounds-checked and returns [`Short`] past the end).

/// The input ended before a field did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("truncated TPM structure")]
pub struct Short;

#[derive(Debug, Default, Clone)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn new() -> Writer {
        Writer(Vec::new())
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A TPM2B: a 16-bit size, then the bytes. Callers pass buffers far below 64 KiB (keys,
    /// digests, nonces); a longer one is cut at 65535 so the encoding stays consistent.
    pub fn tpm2b(&mut self, b: &[u8]) -> &mut Self {
        let b = b.get(..usize::from(u16::MAX)).unwrap_or(b);
        self.u16(b.len() as u16).bytes(b)
    }
}

#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let head = self.buf.get(..n).ok_or(Short)?;
        self.buf = self.buf.get(n..).ok_or(Short)?;
        Ok(head)
    }
    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(*self.take(1)?.first().ok_or(Short)?)
    }
    pub fn u16(&mut self) -> Result<u16, Short> {
        let b: [u8; 2] = self.take(2)?.try_into().map_err(|_| Short)?;
        Ok(u16::from_be_bytes(b))
    }
    pub fn u32(&mut self) -> Result<u32, Short> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| Short)?;
        Ok(u32::from_be_bytes(b))
    }
    pub fn tpm2b(&mut self) -> Result<&'a [u8], Short> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_writes_and_stops_at_the_end() {
        let mut w = Writer::new();
        w.u8(1).u16(0x0203).u32(0x0405_0607).tpm2b(b"xyz");
        let mut r = Reader::new(&w.0);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u32(), Ok(0x0405_0607));
        assert_eq!(r.tpm2b(), Ok(&b"xyz"[..]));
        assert!(r.is_empty());
        assert_eq!(r.u8(), Err(Short));
        assert_eq!(Reader::new(&[0, 5, 1]).tpm2b(), Err(Short));
    }
}

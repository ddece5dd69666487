//! Builds BTF blobs by hand for tests.

/// A BTF blob under construction.
#[derive(Default)]
pub struct BtfBuilder {
    pub types: Vec<u8>,
    pub strings: Vec<u8>,
    /// Number of types added so far (the id of the last one).
    pub count: u32,
}

impl BtfBuilder {
    pub fn new() -> Self {
        BtfBuilder {
            types: Vec::new(),
            strings: vec![0],
            count: 0,
        }
    }
    pub fn str(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }
    /// Appends a raw type record; returns its id.
    pub fn raw(
        &mut self,
        name: &str,
        kind: u32,
        vlen: u32,
        size_or_type: u32,
        extra: &[u32],
    ) -> u32 {
        let name = self.str(name);
        for w in [name, (kind << 24) | vlen, size_or_type]
            .iter()
            .chain(extra)
        {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        self.count += 1;
        self.count
    }
    pub fn int(&mut self, name: &str, size: u32) -> u32 {
        self.raw(name, super::KIND_INT, 0, size, &[size * 8])
    }
    pub fn ptr(&mut self, to: u32) -> u32 {
        self.raw("", super::KIND_PTR, 0, to, &[])
    }
    pub fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
        self.raw("", super::KIND_ARRAY, 0, 0, &[elem, index, n])
    }
    pub fn typedef(&mut self, name: &str, to: u32) -> u32 {
        self.raw(name, super::KIND_TYPEDEF, 0, to, &[])
    }
    /// `__uint(name, n)` member type: pointer to `int[n]`.
    pub fn uint(&mut self, int: u32, n: u32) -> u32 {
        let a = self.array(int, int, n);
        self.ptr(a)
    }
    pub fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32)]) -> u32 {
        let mut extra = Vec::new();
        for (i, (n, ty)) in members.iter().enumerate() {
            extra.extend([self.str(n), *ty, (i as u32) * 64]);
        }
        self.raw(name, super::KIND_STRUCT, members.len() as u32, size, &extra)
    }
    pub fn var(&mut self, name: &str, ty: u32) -> u32 {
        self.raw(name, super::KIND_VAR, 0, ty, &[1])
    }
    pub fn datasec(&mut self, name: &str, vars: &[u32]) -> u32 {
        let mut extra = Vec::new();
        for v in vars {
            extra.extend([*v, 0, 8]);
        }
        self.raw(name, super::KIND_DATASEC, vars.len() as u32, 0, &extra)
    }
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&super::MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

//! Reading little-endian ELF files (32- and 64-bit): their section contents,
//! for audits, and what kind of program they are, for the book.

/// What an ELF file is, from its header and program headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// 32 or 64.
    pub bits: u8,
    /// `i386`, `x86-64`, or `machine N` for others.
    pub machine: String,
    pub linking: Linking,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linking {
    /// Needs no loader.
    Static,
    /// Loaded by the named interpreter.
    Dynamic { interpreter: String },
    /// A shared library (position-independent, no interpreter of its own).
    SharedLibrary,
    /// A relocatable object (`.o`, a kernel module).
    Object,
}

impl Summary {
    /// "static, 32-bit i386", "dynamic (/lib/ld-musl-i386.so.1), 64-bit x86-64".
    pub fn describe(&self) -> String {
        let linking = match &self.linking {
            Linking::Static => "static".to_string(),
            Linking::Dynamic { interpreter } => format!("dynamic ({interpreter})"),
            Linking::SharedLibrary => "shared library".to_string(),
            Linking::Object => "object".to_string(),
        };
        format!("{linking}, {}-bit {}", self.bits, self.machine)
    }
}

/// Bytes of the start of a file that [`summary`] needs in practice: the
/// header and the program headers that follow it.
pub const HEAD: usize = 64 << 10;

struct Reader<'a> {
    data: &'a [u8],
    wide: bool,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Option<Reader<'a>> {
        if data.get(..4)? != b"\x7fELF" || *data.get(5)? != 1 {
            return None;
        }
        Some(Reader {
            data,
            wide: *data.get(4)? == 2,
        })
    }

    fn num(&self, at: usize, len: usize) -> Option<u64> {
        let bytes = self.data.get(at..at.checked_add(len)?)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        )
    }

    /// A field that is 4 bytes wide in 32-bit files and 8 in 64-bit ones.
    fn word(&self, at32: usize, at64: usize) -> Option<u64> {
        if self.wide {
            self.num(at64, 8)
        } else {
            self.num(at32, 4)
        }
    }
}

/// What kind of ELF file `head` (the file's first bytes, at least its
/// program headers) is; `None` if it is not a little-endian ELF file.
pub fn summary(head: &[u8], path: &str) -> Option<Summary> {
    let r = Reader::new(head)?;
    let kind = r.num(0x10, 2)?;
    let machine = match r.num(0x12, 2)? {
        3 => "i386".to_string(),
        62 => "x86-64".to_string(),
        40 => "arm".to_string(),
        183 => "aarch64".to_string(),
        243 => "riscv".to_string(),
        n => format!("machine {n}"),
    };
    let phoff = r.word(0x1c, 0x20)?;
    let (phentsize, phnum) = if r.wide {
        (r.num(0x36, 2)?, r.num(0x38, 2)?)
    } else {
        (r.num(0x2a, 2)?, r.num(0x2c, 2)?)
    };
    let mut interpreter = None;
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).ok()?;
        // PT_INTERP: the program names its loader.
        if r.num(at, 4)? == 3 {
            let offset = r.word(at + 4, at + 8)? as usize;
            let size = r.word(at + 16, at + 32)? as usize;
            let name = head.get(offset..offset + size).unwrap_or_default();
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            interpreter = Some(String::from_utf8_lossy(name).into_owned());
        }
    }
    let linking = match (kind, interpreter) {
        (1, _) => Linking::Object,
        (_, Some(interpreter)) => Linking::Dynamic { interpreter },
        // ET_DYN without a loader: a library, unless it is a static PIE.
        (3, None) if path.contains(".so") => Linking::SharedLibrary,
        (_, None) => Linking::Static,
    };
    Some(Summary {
        bits: if r.wide { 64 } else { 32 },
        machine,
        linking,
    })
}

/// Section names and contents of a 64- or 32-bit little-endian ELF file.
pub fn sections(data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let r = Reader::new(data)?;
    let shoff = r.word(0x20, 0x28)?;
    let (shentsize, shnum, shstrndx) = if r.wide {
        (r.num(0x3a, 2)?, r.num(0x3c, 2)?, r.num(0x3e, 2)?)
    } else {
        (r.num(0x2e, 2)?, r.num(0x30, 2)?, r.num(0x32, 2)?)
    };
    let section = |i: u64| -> Option<(u64, u64, u64, u64)> {
        let at = (shoff + i * shentsize) as usize;
        Some((
            r.num(at, 4)?,
            r.num(at + 4, 4)?,
            r.word(at + 0x10, at + 0x18)?,
            r.word(at + 0x14, at + 0x20)?,
        ))
    };
    let (_, _, str_off, str_size) = section(shstrndx)?;
    let names = data.get(str_off as usize..(str_off + str_size) as usize)?;
    let mut out = Vec::new();
    for i in 1..shnum {
        let (name_at, kind, offset, size) = section(i)?;
        let name_bytes = names.get(name_at as usize..)?;
        let end = name_bytes.iter().position(|&b| b == 0)?;
        let name = String::from_utf8_lossy(&name_bytes[..end]).into_owned();
        // SHT_NOBITS (.bss) has no bytes in the file.
        let body = if kind == 8 {
            Vec::new()
        } else {
            data.get(offset as usize..(offset + size) as usize)?
                .to_vec()
        };
        out.push((name, body));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_a_dynamic_64_bit_program() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let found = summary(&exe[..HEAD.min(exe.len())], "test").unwrap();
        assert_eq!(found.bits, 64);
        assert_eq!(found.machine, "x86-64");
        assert!(
            matches!(&found.linking, Linking::Dynamic { interpreter } if interpreter.contains("ld-linux")),
            "{found:?}"
        );
        assert!(summary(b"#!/bin/sh\n", "script").is_none());
    }

    #[test]
    fn a_32_bit_static_header_reads_as_static_i386() {
        // A minimal ELF32 executable header with one PT_LOAD program header.
        let mut elf = vec![0u8; 52 + 32];
        elf[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
        elf[0x10] = 2; // ET_EXEC
        elf[0x12] = 3; // EM_386
        elf[0x1c] = 52; // e_phoff
        elf[0x2a] = 32; // e_phentsize
        elf[0x2c] = 1; // e_phnum
        elf[52] = 1; // PT_LOAD
        let found = summary(&elf, "bin/busybox").unwrap();
        assert_eq!(found.describe(), "static, 32-bit i386");
        elf[52] = 3; // PT_INTERP, pointing at "/lib/ld.so" appended below
        let at = elf.len() as u8;
        elf.extend(b"/lib/ld.so\0");
        elf[52 + 4] = at;
        elf[52 + 16] = 11;
        assert_eq!(
            summary(&elf, "bin/x").unwrap().describe(),
            "dynamic (/lib/ld.so), 32-bit i386"
        );
    }
}

//! The machine a guest stage runs as (what `uname -m` says in it), read
//! from its kernel's boot header.

use std::fs;
use std::io::Read;
use std::path::Path;

use nix::sys::personality::Persona;

use crate::error::runner::RunnerError;
use crate::error::{IoContext, Result};

/// `PER_LINUX32` from <linux/personality.h>: uname(2) reports `i686`.
const PER_LINUX32: i32 = 0x0008;

/// The machine a guest's kernel makes: what `uname -m` says there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    I686,
    X86_64,
}

impl Machine {
    /// Reads a bzImage's boot header (the x86 boot protocol): a kernel with
    /// a 64-bit entry point (`XLF_KERNEL_64` in `xloadflags`, protocol 2.12
    /// and later) is x86_64, any other i686.
    pub fn of_kernel(kernel: &Path) -> Result<Machine> {
        let mut header = [0u8; 0x238];
        fs::File::open(kernel)
            .and_then(|mut f| f.read_exact(&mut header))
            .io_context(|| format!("reading the boot header of {}", kernel.display()))?;
        if &header[0x202..0x206] != b"HdrS" {
            return Err(RunnerError::NotBzImage {
                kernel: kernel.to_path_buf(),
            }
            .into());
        }
        let version = u16::from_le_bytes([header[0x206], header[0x207]]);
        let xloadflags = u16::from_le_bytes([header[0x236], header[0x237]]);
        Ok(if version >= 0x020c && xloadflags & 1 == 1 {
            Machine::X86_64
        } else {
            Machine::I686
        })
    }

    /// The execution domain that makes uname(2) say [`Machine::name`]:
    /// `PER_LINUX32` or plain `PER_LINUX`, whatever stagebuild runs under.
    pub fn persona(self) -> Persona {
        match self {
            Machine::I686 => Persona::from_bits_retain(PER_LINUX32),
            Machine::X86_64 => Persona::empty(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Machine::I686 => "i686",
            Machine::X86_64 => "x86_64",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::runner::group;

    fn bzimage(version: u16, xloadflags: u16) -> tempfile::NamedTempFile {
        let mut header = vec![0u8; 0x400];
        header[0x202..0x206].copy_from_slice(b"HdrS");
        header[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        header[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&header).unwrap();
        file
    }

    #[test]
    fn the_machine_comes_from_the_kernels_boot_header() {
        assert_eq!(
            Machine::of_kernel(bzimage(0x020f, 0x7f).path()).unwrap(),
            Machine::X86_64
        );
        assert_eq!(
            Machine::of_kernel(bzimage(0x020f, 0x7e).path()).unwrap(),
            Machine::I686
        );
        // Before protocol 2.12 the field is something else.
        assert_eq!(
            Machine::of_kernel(bzimage(0x020b, 0x01).path()).unwrap(),
            Machine::I686
        );
        let mut not_a_kernel = tempfile::NamedTempFile::new().unwrap();
        not_a_kernel.write_all(&[0u8; 0x400]).unwrap();
        let e = Machine::of_kernel(not_a_kernel.path()).unwrap_err();
        assert!(e.to_string().contains("not a bzImage"), "{e}");
    }

    #[test]
    fn the_32_bit_personality_makes_uname_say_i686() {
        let out = duct::cmd("uname", ["-m"])
            .before_spawn(|cmd| {
                group::set_persona(cmd, Machine::I686.persona());
                Ok(())
            })
            .read()
            .unwrap();
        assert_eq!(out, "i686");
    }
}

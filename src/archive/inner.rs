//! A source whose payload is an archive inside it (`unpack:` in a step
//! file): only that member is unpacked, read straight out of the outer one.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use tar::EntryType;

use super::decoder::Decoder;
use super::{ArchiveError, Format, Unpacker, inside_path, pipe};

impl Unpacker {
    /// Unpacks only the archive `member` held inside `archive` (named
    /// `name`), read straight out of it: nothing else of the outer archive
    /// is written. The member goes through every check any source does.
    pub fn inner_source(
        &mut self,
        archive: &Path,
        name: &str,
        member: &str,
    ) -> Result<(), ArchiveError> {
        let file = fs::File::open(archive).map_err(ArchiveError::Read)?;
        let outer = Decoder::new(Format::of(name), io::BufReader::new(file));
        pipe::decompressed(outer, |outer| self.member_of(outer, name, member))
    }

    /// The archive `member` of the tar `outer` (the source `name`), unpacked.
    fn member_of(
        &mut self,
        outer: &mut dyn Read,
        name: &str,
        member: &str,
    ) -> Result<(), ArchiveError> {
        let wanted = inside_path(Path::new(member));
        let mut tar = tar::Archive::new(outer);
        for entry in tar.entries().map_err(ArchiveError::Read)? {
            let entry = entry.map_err(ArchiveError::Read)?;
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if inside_path(Path::new(&path)) != wanted {
                continue;
            }
            if !matches!(
                entry.header().entry_type(),
                EntryType::Regular | EntryType::Continuous
            ) {
                return Err(ArchiveError::Refused {
                    entry: path,
                    reason: format!("the member to unpack from {name} is not a plain file"),
                });
            }
            return self.tar(Decoder::new(Format::of(member), io::BufReader::new(entry)));
        }
        Err(ArchiveError::Refused {
            entry: member.to_string(),
            reason: format!("{name} holds no such member to unpack"),
        })
    }
}

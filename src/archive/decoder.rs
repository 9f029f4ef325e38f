//! A source's bytes decompressed by its format, as one `Read` type that is
//! `Send` whenever what it reads is, so that it can run on a thread of its
//! own ([`super::pipe`]).

use std::io::{self, Read};

use super::Format;

pub enum Decoder<R: Read> {
    Plain(R),
    Gz(flate2::read::MultiGzDecoder<R>),
    Bz2(bzip2::read::MultiBzDecoder<R>),
    Xz(liblzma::read::XzDecoder<R>),
}

impl<R: Read> Decoder<R> {
    pub fn new(format: Format, reader: R) -> Decoder<R> {
        match format {
            Format::Tar | Format::Plain => Decoder::Plain(reader),
            Format::TarGz => Decoder::Gz(flate2::read::MultiGzDecoder::new(reader)),
            Format::TarBz2 => Decoder::Bz2(bzip2::read::MultiBzDecoder::new(reader)),
            Format::TarXz => Decoder::Xz(liblzma::read::XzDecoder::new_multi_decoder(reader)),
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gz(r) => r.read(buf),
            Decoder::Bz2(r) => r.read(buf),
            Decoder::Xz(r) => r.read(buf),
        }
    }
}

//! Metadata blocks: the compressed 8 KiB blocks that hold inodes,
//! directories and the lookup tables, and the compressors they use.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use crate::Error;

/// Uncompressed size of a full metadata block.
pub const METADATA_SIZE: usize = 8192;
/// Set in a metadata block's header when the block is stored uncompressed.
const UNCOMPRESSED: u16 = 0x8000;

/// The compressors kiln can read and write metadata with (squashfs ids 1, 4, 5, 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compressor {
    Gzip,
    Xz,
    Lz4,
    Zstd,
}

impl Compressor {
    pub fn from_id(id: u16) -> Result<Compressor, Error> {
        Ok(match id {
            1 => Compressor::Gzip,
            4 => Compressor::Xz,
            5 => Compressor::Lz4,
            6 => Compressor::Zstd,
            2 => return Err(Error::Unsupported("the lzma compressor".into())),
            3 => return Err(Error::Unsupported("the lzo compressor".into())),
            n => return Err(Error::Format(format!("unknown compressor id {n}"))),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compressor::Gzip => "gzip",
            Compressor::Xz => "xz",
            Compressor::Lz4 => "lz4",
            Compressor::Zstd => "zstd",
        }
    }

    pub fn decompress(self, data: &[u8], max: usize) -> Result<Vec<u8>, Error> {
        let bad = |e: std::io::Error| Error::Format(format!("cannot decompress a {} metadata block: {e}", self.name()));
        let mut out = Vec::with_capacity(max);
        match self {
            Compressor::Gzip => {
                flate2::read::ZlibDecoder::new(data)
                    .take(max as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(bad)?;
            }
            Compressor::Xz => {
                liblzma::read::XzDecoder::new(data)
                    .take(max as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(bad)?;
            }
            Compressor::Lz4 => {
                out = lz4_flex::block::decompress(data, max)
                    .map_err(|e| Error::Format(format!("cannot decompress an lz4 metadata block: {e}")))?;
            }
            Compressor::Zstd => {
                out = zstd::bulk::decompress(data, max).map_err(bad)?;
            }
        }
        if out.len() > max {
            return Err(Error::Format("a metadata block is larger than 8 KiB".into()));
        }
        Ok(out)
    }

    /// Compresses one metadata block so that the kernel's decompressor for
    /// this compressor accepts it (xz: CRC32 check and a dictionary no
    /// larger than any data block's).
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, Error> {
        let io = |e: std::io::Error| Error::Io(format!("compressing metadata with {}", self.name()), e);
        Ok(match self {
            Compressor::Gzip => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
                e.write_all(data).map_err(io)?;
                e.finish().map_err(io)?
            }
            Compressor::Xz => {
                let mut opts = liblzma::stream::LzmaOptions::new_preset(6)
                    .map_err(|e| Error::Io("xz options".into(), e.into()))?;
                opts.dict_size(METADATA_SIZE as u32);
                let mut filters = liblzma::stream::Filters::new();
                filters.lzma2(&opts);
                let stream = liblzma::stream::Stream::new_stream_encoder(&filters, liblzma::stream::Check::Crc32)
                    .map_err(|e| Error::Io("xz encoder".into(), e.into()))?;
                let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
                e.write_all(data).map_err(io)?;
                e.finish().map_err(io)?
            }
            Compressor::Lz4 => lz4_flex::block::compress(data),
            Compressor::Zstd => zstd::bulk::compress(data, 15).map_err(io)?,
        })
    }
}

/// Reads metadata blocks of one image by absolute position, caching each
/// decompressed block. Reads may span blocks, as inodes and directory
/// listings do.
pub struct MetaReader<'a> {
    file: &'a File,
    comp: Compressor,
    len: u64,
    /// block position → (decompressed bytes, position of the next block)
    cache: HashMap<u64, (Vec<u8>, u64)>,
}

impl<'a> MetaReader<'a> {
    pub fn new(file: &'a File, comp: Compressor, len: u64) -> MetaReader<'a> {
        MetaReader {
            file,
            comp,
            len,
            cache: HashMap::new(),
        }
    }

    fn block(&mut self, pos: u64) -> Result<&(Vec<u8>, u64), Error> {
        if !self.cache.contains_key(&pos) {
            let mut h = [0u8; 2];
            read_at(self.file, &mut h, pos, self.len)?;
            let h = u16::from_le_bytes(h);
            let size = usize::from(h & !UNCOMPRESSED);
            if size == 0 || size > METADATA_SIZE {
                return Err(Error::Format(format!("bad metadata block header at byte {pos}")));
            }
            let mut raw = vec![0u8; size];
            read_at(self.file, &mut raw, pos + 2, self.len)?;
            let data = if h & UNCOMPRESSED != 0 {
                raw
            } else {
                self.comp.decompress(&raw, METADATA_SIZE)?
            };
            self.cache.insert(pos, (data, pos + 2 + size as u64));
        }
        self.cache
            .get(&pos)
            .ok_or_else(|| Error::Format("metadata cache".into()))
    }

    /// Reads `n` bytes starting at `offset` inside the block at `pos`;
    /// returns them and the position just after them.
    pub fn read(&mut self, mut pos: u64, mut offset: usize, n: usize) -> Result<(Vec<u8>, u64, usize), Error> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let (data, next) = self.block(pos)?;
            if offset > data.len() {
                return Err(Error::Format(format!(
                    "metadata offset {offset} beyond its block at {pos}"
                )));
            }
            let take = (n - out.len()).min(data.len() - offset);
            out.extend_from_slice(&data[offset..offset + take]);
            offset += take;
            if offset == data.len() {
                pos = *next;
                offset = 0;
            }
        }
        Ok((out, pos, offset))
    }
}

/// Reads exactly `buf.len()` bytes at `pos`, refusing to read past `len`.
pub fn read_at(file: &File, buf: &mut [u8], pos: u64, len: u64) -> Result<(), Error> {
    if pos.checked_add(buf.len() as u64).is_none_or(|end| end > len) {
        return Err(Error::Format(format!(
            "a reference points past the end of the image (byte {pos})"
        )));
    }
    file.read_exact_at(buf, pos)
        .map_err(|e| Error::Io(format!("reading byte {pos}"), e))
}

/// Builds a metadata table: bytes appended in 8 KiB blocks, each
/// compressed unless compression does not help (or is off).
pub struct MetaWriter {
    comp: Option<Compressor>,
    pub out: Vec<u8>,
    cur: Vec<u8>,
    /// Where each block starts within `out`.
    pub blocks: Vec<u64>,
}

impl MetaWriter {
    pub fn new(comp: Option<Compressor>) -> MetaWriter {
        MetaWriter {
            comp,
            out: Vec::new(),
            cur: Vec::with_capacity(METADATA_SIZE),
            blocks: Vec::new(),
        }
    }

    /// Where the next byte goes: (start of its block within the table, offset in the block).
    pub fn position(&self) -> (u32, u16) {
        (self.out.len() as u32, self.cur.len() as u16)
    }

    pub fn reference(&self) -> u64 {
        let (block, offset) = self.position();
        (u64::from(block) << 16) | u64::from(offset)
    }

    pub fn write(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            let take = bytes.len().min(METADATA_SIZE - self.cur.len());
            self.cur.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.cur.len() == METADATA_SIZE {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.cur.is_empty() {
            return Ok(());
        }
        self.blocks.push(self.out.len() as u64);
        let packed = match self.comp {
            Some(c) => Some(c.compress(&self.cur)?).filter(|p| p.len() < self.cur.len()),
            None => None,
        };
        match packed {
            Some(p) => {
                self.out.extend_from_slice(&(p.len() as u16).to_le_bytes());
                self.out.extend_from_slice(&p);
            }
            None => {
                self.out
                    .extend_from_slice(&(self.cur.len() as u16 | UNCOMPRESSED).to_le_bytes());
                self.out.extend_from_slice(&self.cur);
            }
        }
        self.cur.clear();
        Ok(())
    }

    /// The table's bytes and where each of its blocks starts.
    pub fn finish(mut self) -> Result<(Vec<u8>, Vec<u64>), Error> {
        self.flush()?;
        Ok((self.out, self.blocks))
    }
}

//! Arbitrary bytes as a source image file: format detection and the whole
//! import check (squashfs tree, erofs superblock, tar scan) must refuse or
//! accept it without panicking, and agree on the format.

#![no_main]

use std::io::{Seek, Write};

use kiln_store::catalog::Format;
use kiln_store::image_check::{HEAD, InvalidImage, check_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let detected = Format::detect(&data[..data.len().min(HEAD)]);
    let mut f = tempfile::tempfile().expect("a temporary file");
    f.write_all(data).expect("write");
    f.rewind().expect("rewind");
    match check_file(f) {
        Ok(c) => assert_eq!(Some(c.format), detected),
        Err(InvalidImage::Unknown) => assert_eq!(detected, None),
        Err(InvalidImage::Broken { format, message }) => {
            assert_eq!(Some(format), detected);
            assert!(!message.is_empty());
        }
        Err(InvalidImage::Io(e)) => panic!("reading a temporary file: {e}"),
    }
});

//! Arbitrary bytes as a squashfs image: opening it and loading its whole
//! tree (the check `kiln image import` runs) must refuse or accept it
//! without panicking, looping or allocating without bound.

#![no_main]

use std::io::{Seek, Write};

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut f = tempfile::tempfile().expect("a temporary file");
    f.write_all(data).expect("write");
    f.rewind().expect("rewind");
    if let Ok(s) = kiln_squashfs::check_file(f) {
        assert!(!s.tree_checked || s.bytes_used <= data.len() as u64);
    }
});

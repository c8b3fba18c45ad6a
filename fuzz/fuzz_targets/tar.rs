//! Arbitrary bytes as a (possibly compressed) tar stream: the scan and the
//! extractor must not panic, must agree (an archive that extracts passes
//! the scan), and extraction must write nothing outside its destination.

#![no_main]

use std::fs;
use std::io::Cursor;

use kiln_tar::extract::{Limits, decompressed, extract_with, scan};
use libfuzzer_sys::fuzz_target;

/// Small enough for the fuzzer's memory limit.
const LIMITS: Limits = Limits {
    max_entries: 2_000,
    max_bytes: 32 << 20,
};

fuzz_target!(|data: &[u8]| {
    let scanned = decompressed(Cursor::new(data.to_vec())).map(|s| scan(s, &LIMITS));
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).expect("mkdir");
    let extracted = decompressed(Cursor::new(data.to_vec())).map(|s| extract_with(s, &dest, &LIMITS));
    if let Ok(Ok(stats)) = &extracted {
        match &scanned {
            Ok(Ok(s)) => assert_eq!(s.entries, stats.entries, "the scan and extraction count alike"),
            other => panic!("extracted {stats:?} but the scan said {other:?}"),
        }
    }
    let beside: Vec<_> = fs::read_dir(tmp.path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(beside, ["dest"], "nothing beside the destination");
});

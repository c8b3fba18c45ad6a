//! The hub's Koji endpoint reads untrusted XML-RPC documents: the request
//! parser must never panic, whatever the bytes, and what it accepts must
//! respect its limits.
//!
//! The input is a request body as sent to `POST /kojihub`. A call that
//! parses is bound to a few parameter lists (as the methods bind them),
//! and answered back as a reply and as a fault.

#![no_main]

use kiln_hub::koji::args::Args;
use kiln_hub::koji::wire::{self, MAX_DEPTH, Value};
use libfuzzer_sys::fuzz_target;

/// How deep arrays and structs nest in `v` (a scalar is 0).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Struct(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(call) = wire::parse_call(data) else {
        return;
    };
    assert!(!call.method.is_empty() && call.method.chars().all(|c| c.is_ascii_graphic()));
    for v in call.args.iter().chain(call.kwargs.values()) {
        assert!(depth(v) <= MAX_DEPTH, "a call nested past the limit was accepted");
    }
    assert!(!call.kwargs.contains_key("__starstar"));
    for names in [&[][..], &["tag"][..], &["tag", "event", "reverse"][..], &["calls", "strict"][..]] {
        if let Ok(a) = Args::bind(&call, names) {
            for n in names {
                let _ = a.get(n);
                let _ = a.flag(n);
            }
        }
    }
    let _ = wire::reply(Value::Array(call.args.clone()));
    let _ = wire::fault_xml(&wire::Fault::generic(call.method.clone()));
});

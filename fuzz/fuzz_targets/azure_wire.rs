#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podid_fuzz::azure_wire::run(data));

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podid_fuzz::api_decode::run(data));

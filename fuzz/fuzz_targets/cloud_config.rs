#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podid_fuzz::cloud_config::run(data));

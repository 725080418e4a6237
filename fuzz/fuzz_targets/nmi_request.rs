#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podid_fuzz::nmi_request::run(data));

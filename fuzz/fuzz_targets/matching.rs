#![no_main]

libfuzzer_sys::fuzz_target!(|world: podid_fuzz::matching::World| podid_fuzz::matching::run(&world));

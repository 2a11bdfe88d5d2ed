//! PrisonTmp: no panic; an accepted size is at least one page and fits tmpfs's `size=` (no
//! overflow as a signed byte count); `off` is the only other accepted form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mod_prison::config::{Tmp, MIN_TMP_SIZE};

fuzz_target!(|text: &str| {
    match Tmp::parse(text) {
        Ok(Tmp::Size(bytes)) => {
            assert!(bytes >= MIN_TMP_SIZE, "{text:?}");
            assert!(bytes <= i64::MAX as u64, "{text:?}");
        }
        Ok(Tmp::Off) => assert!(text.eq_ignore_ascii_case("off"), "{text:?}"),
        Ok(Tmp::Default) => panic!("{text:?} parsed as the unset default"),
        Err(_) => {}
    }
});

//! PrisonName and the default from ServerName: no panic; an accepted name is usable as a jail
//! name, a hostname, a cgroup directory and an abstract socket name: 1 to MAX_NAME_LEN of
//! [A-Za-z0-9_-], not all digits, not starting with '-'.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mod_prison::config::{PrisonName, MAX_NAME_LEN};

fn check(name: &PrisonName, input: &str) {
    let s = name.as_str();
    assert!(!s.is_empty() && s.len() <= MAX_NAME_LEN, "{input:?}");
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{input:?}"
    );
    assert!(
        !s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('-'),
        "{input:?}"
    );
    assert_eq!(PrisonName::parse(s).as_ref(), Ok(name), "{input:?}");
}

fuzz_target!(|text: &str| {
    if let Ok(name) = PrisonName::parse(text) {
        check(&name, text);
    }
    if let Ok(name) = PrisonName::from_server_name(text) {
        check(&name, text);
    }
});

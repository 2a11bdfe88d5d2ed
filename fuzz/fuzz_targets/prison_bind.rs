//! PrisonBind: no panic; an accepted bind has absolute, normal paths that can become C
//! strings for mount(2) (httpd never passes NUL, so inputs with NUL are skipped), never the
//! host's / as source, never the prison's / or /dev as target.
#![no_main]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use mod_prison::config::Bind;

fuzz_target!(|words: Vec<&str>| {
    if words.is_empty() || words.len() > 3 || words.iter().any(|w| w.contains('\0')) {
        return; // httpd's TAKE123 passes one to three NUL-free words
    }
    // Every host path "exists" except those containing "missing", to reach every branch.
    let Ok(bind) = Bind::parse(&words, |p| {
        !p.as_os_str().as_bytes().windows(7).any(|w| w == b"missing")
    }) else {
        return;
    };
    for path in [&bind.host, &bind.inside] {
        assert!(path.is_absolute(), "{words:?}");
        assert!(
            path.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
            "{words:?}"
        );
        CString::new(path.as_os_str().as_bytes()).expect("no NUL in an accepted path");
    }
    assert_ne!(bind.host, Path::new("/"), "{words:?}");
    assert!(
        bind.inside != Path::new("/") && bind.inside != Path::new("/dev"),
        "{words:?}"
    );
});

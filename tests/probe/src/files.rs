//! What the probe can see of the file system: `/`, /proc, files, directories, namespaces.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::json::Object;
use crate::sys::{report, Errno, Outcome};

/// How many bytes `read=` reports.
const HEAD_BYTES: usize = 64;

/// root_entries and proc_exists.
pub fn view() -> Object {
    Object::new()
        .with("root_entries", report(list_dir(b"/")))
        .with("proc_exists", Path::new("/proc").exists())
}

fn path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// `read=`: open the file and read its first bytes.
pub fn read_head(file: &[u8]) -> Outcome {
    let mut file = std::fs::File::open(path(file))?;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    // `take` + `read_to_end` retries short reads and EINTR.
    file.by_ref()
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(Object::new()
        .with("bytes", head.len())
        .with("head", String::from_utf8_lossy(&head).into_owned()))
}

/// What `write=` writes.
pub const WRITTEN: &str = "written by the probe\n";

/// `write=`: create (or truncate) the file and write [`WRITTEN`] into it, or `size` bytes.
pub fn write_file(file: &[u8], size: Option<u64>) -> Outcome {
    let Some(size) = size else {
        std::fs::write(path(file), WRITTEN)?;
        return Ok(Object::new().with("bytes", WRITTEN.len()));
    };
    let mut out = std::fs::File::create(path(file))?;
    let chunk = [b'x'; 1 << 16];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        std::io::Write::write_all(&mut out, &chunk[..n])?;
        left -= n as u64;
    }
    Ok(Object::new().with("bytes", size))
}

/// `ls=`: the sorted names in a directory (without `.` and `..`).
pub fn list_dir(dir: &[u8]) -> Outcome {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path(dir))? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(Object::new().with("entries", names))
}

/// `ns=1`: the targets of the /proc/self/ns links, e.g. `"net": "net:[4026532281]"`.
pub fn namespaces() -> Outcome {
    let mut links = Vec::new();
    for entry in std::fs::read_dir("/proc/self/ns")? {
        let entry = entry?;
        let target = std::fs::read_link(entry.path()).map_err(Errno::from)?;
        links.push((
            entry.file_name().to_string_lossy().into_owned(),
            target.to_string_lossy().into_owned(),
        ));
    }
    links.sort();
    let mut out = Object::new();
    for (name, target) in links {
        out.insert(name, target);
    }
    Ok(Object::new().with("links", out))
}

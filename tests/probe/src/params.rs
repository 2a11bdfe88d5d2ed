//! The probe's parameters: `key=value` pairs from QUERY_STRING (as a CGI) or from the
//! command-line arguments (as a tool, for negative controls outside the prison).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// One `key=value` pair, as raw bytes: paths need not be UTF-8.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Longest `sleep=` honoured, in milliseconds; larger values are cut down to it.
pub const MAX_SLEEP_MS: u64 = 30_000;
/// Most children `fork=` may ask for.
pub const MAX_FORKS: u32 = 10_000;

/// Splits a query string (`a=b&c=d`) into percent-decoded pairs.
///
/// The form encoding is used: `+` is a space, so a literal plus must be sent as `%2B`
/// (Python's `urllib.parse.urlencode` does this). A malformed `%` escape is kept as it is.
/// A part without `=` is a key with an empty value; empty parts are skipped.
pub fn parse_query(query: &[u8]) -> Vec<Pair> {
    query
        .split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = split_pair(part);
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// Splits command-line arguments (`read=/etc/hosts`) into pairs, without any decoding.
pub fn parse_args<I: IntoIterator<Item = OsString>>(args: I) -> Vec<Pair> {
    args.into_iter()
        .map(|arg| {
            let arg = arg.into_vec();
            let (key, value) = split_pair(&arg);
            (key.to_vec(), value.to_vec())
        })
        .collect()
}

fn split_pair(part: &[u8]) -> (&[u8], &[u8]) {
    match part.iter().position(|&b| b == b'=') {
        Some(i) => (&part[..i], &part[i + 1..]),
        None => (part, &[]),
    }
}

/// Decodes `%XX` escapes and `+` (space).
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let escape = input.get(i + 1..i + 3).and_then(|hex| {
                    let hi = hex_value(hex[0])?;
                    let lo = hex_value(hex[1])?;
                    Some(hi << 4 | lo)
                });
                if let Some(byte) = escape {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// What the caller asked the probe to check. Repeatable keys keep their first-seen order and
/// are de-duplicated, because their results are reported in an object keyed by the value.
#[derive(Debug, Default, PartialEq)]
pub struct Request {
    pub read: Vec<Vec<u8>>,
    pub ls: Vec<Vec<u8>>,
    pub connect: Vec<String>,
    pub udp: Vec<String>,
    pub bind: Vec<String>,
    pub socket: Vec<String>,
    /// `abstract=name`: connect to the abstract unix socket `name`.
    pub abstract_unix: Vec<String>,
    pub resolve: Vec<String>,
    pub exec: Vec<Vec<u8>>,
    /// `write=path`: create (or truncate) the file and write a line into it, or
    /// `write_size=` bytes.
    pub write: Vec<Vec<u8>>,
    pub write_size: Option<Result<u64, String>>,
    pub namespaces: bool,
    /// `widen=1`: ask for every CPU (sched_setaffinity) before reporting `cpu_affinity`.
    pub widen: bool,
    /// `Err` holds why the value was refused; the last `sleep=` wins, likewise below.
    pub sleep_ms: Option<Result<u64, String>>,
    pub alloc_bytes: Option<Result<u64, String>>,
    pub forks: Option<Result<u32, String>>,
    /// `syscalls=n`: time n cheap syscalls (the seccomp filter's cost, for the benchmarks).
    pub syscalls: Option<Result<u64, String>>,
    /// `seccomp_floor=n`: time n cheap syscalls, install an allow-all seccomp filter, time them
    /// again: what any filter costs on this kernel (run it unjailed).
    pub seccomp_floor: Option<Result<u64, String>>,
    /// `quick=1`: answer at once with nothing but who answered (the CGI benchmark).
    pub quick: bool,
    /// `panic=1`: panic on purpose, to test that the answer is still JSON.
    pub panic: bool,
    /// `attack=1`: run the attack battery (with `fdpass=` and `kill=`).
    pub attack: bool,
    pub attack_targets: crate::attack::Targets,
    pub unknown: Vec<String>,
}

impl Request {
    pub fn from_pairs(pairs: Vec<Pair>) -> Self {
        let mut request = Request::default();
        for (key, value) in pairs {
            match key.as_slice() {
                b"read" => push_unique(&mut request.read, value),
                b"ls" => push_unique(&mut request.ls, value),
                b"exec" => push_unique(&mut request.exec, value),
                b"write" => push_unique(&mut request.write, value),
                b"write_size" => request.write_size = Some(parse_size("write_size", &value)),
                b"connect" => push_unique(&mut request.connect, lossy(&value)),
                b"udp" => push_unique(&mut request.udp, lossy(&value)),
                b"bind" => push_unique(&mut request.bind, lossy(&value)),
                b"socket" => push_unique(&mut request.socket, lossy(&value)),
                b"abstract" => push_unique(&mut request.abstract_unix, lossy(&value)),
                b"resolve" => push_unique(&mut request.resolve, lossy(&value)),
                b"ns" => request.namespaces = flag(&value),
                b"widen" => request.widen = flag(&value),
                b"panic" => request.panic = flag(&value),
                b"attack" => request.attack = flag(&value),
                b"fdpass" => request.attack_targets.fdpass = Some(value),
                b"tmp" => request.attack_targets.tmp = Some(value),
                b"kill" => request.attack_targets.kill = lossy(&value).parse().ok(),
                b"sleep" => {
                    let ms = parse_number("sleep", &value).map(|ms| ms.min(MAX_SLEEP_MS));
                    request.sleep_ms = Some(ms);
                }
                b"syscalls" => request.syscalls = Some(parse_number("syscalls", &value)),
                b"seccomp_floor" => {
                    request.seccomp_floor = Some(parse_number("seccomp_floor", &value))
                }
                b"quick" => request.quick = flag(&value),
                b"alloc" => request.alloc_bytes = Some(parse_size("alloc", &value)),
                b"fork" => {
                    let n = parse_number("fork", &value).and_then(|n| match u32::try_from(n) {
                        Ok(n) if n <= MAX_FORKS => Ok(n),
                        _ => Err(format!("fork={n}: at most {MAX_FORKS}")),
                    });
                    request.forks = Some(n);
                }
                _ => push_unique(&mut request.unknown, lossy(&key)),
            }
        }
        request
    }
}

/// Any value but empty or "0" turns a flag on.
fn flag(value: &[u8]) -> bool {
    !matches!(value, b"" | b"0")
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, value: T) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// Text for reports and for values that must be text anyway (addresses, host names).
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_number(key: &str, value: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(value).unwrap_or("");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{key}={}: not a decimal number", lossy(value)));
    }
    text.parse()
        .map_err(|_| format!("{key}={text}: number too large"))
}

/// A byte count with an optional binary suffix: `1048576`, `512K`, `64M`, `1G`.
fn parse_size(key: &str, value: &[u8]) -> Result<u64, String> {
    let (digits, unit) = match value.last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&value[..value.len() - 1], 1u64 << 10),
        Some(b'M') => (&value[..value.len() - 1], 1 << 20),
        Some(b'G') => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    parse_number(key, digits)?
        .checked_mul(unit)
        .ok_or_else(|| format!("{key}={}: number too large", lossy(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
        list.iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn query_is_split_and_decoded() {
        assert_eq!(
            parse_query(b"read=%2Fetc%2Fhosts&connect=%5B%3A%3A1%5D%3A80&x"),
            pairs(&[("read", "/etc/hosts"), ("connect", "[::1]:80"), ("x", "")])
        );
        assert_eq!(parse_query(b""), Vec::<Pair>::new());
        assert_eq!(parse_query(b"&&a=1&"), pairs(&[("a", "1")]));
        // Only the first '=' separates key and value.
        assert_eq!(parse_query(b"read=a=b"), pairs(&[("read", "a=b")]));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a+b%20c"), b"a b c");
        assert_eq!(percent_decode(b"%2B%2b"), b"++");
        assert_eq!(percent_decode(b"%41%7a"), b"Az");
        // Non-UTF-8 bytes come through as they are.
        assert_eq!(percent_decode(b"%FF%00"), vec![0xff, 0x00]);
        // Malformed escapes are kept literally.
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"%zz%4g"), b"%zz%4g");
        assert_eq!(percent_decode(b"%%41"), b"%A");
    }

    #[test]
    fn args_are_not_decoded() {
        let args = ["read=/a+b%20", "ns=1", "bare"].map(OsString::from);
        assert_eq!(
            parse_args(args),
            pairs(&[("read", "/a+b%20"), ("ns", "1"), ("bare", "")])
        );
    }

    #[test]
    fn request_collects_repeatable_keys_in_order_without_duplicates() {
        let r = Request::from_pairs(parse_query(
            b"read=/b&read=/a&read=/b&connect=127.0.0.1:1&connect=[::1]:2&udp=10.0.0.1:53\
              &resolve=localhost&ls=/&exec=/bin/true&bind=0.0.0.0:0%2F127.0.0.1:1&socket=raw4\
              &abstract=srv&abstract=srv",
        ));
        assert_eq!(r.abstract_unix, vec!["srv"]);
        assert_eq!(r.bind, vec!["0.0.0.0:0/127.0.0.1:1"]);
        assert_eq!(r.socket, vec!["raw4"]);
        assert_eq!(r.read, vec![b"/b".to_vec(), b"/a".to_vec()]);
        assert_eq!(r.connect, vec!["127.0.0.1:1", "[::1]:2"]);
        assert_eq!(r.udp, vec!["10.0.0.1:53"]);
        assert_eq!(r.resolve, vec!["localhost"]);
        assert_eq!(r.ls, vec![b"/".to_vec()]);
        assert_eq!(r.exec, vec![b"/bin/true".to_vec()]);
        assert!(!r.namespaces);
        assert!(r.unknown.is_empty());
    }

    #[test]
    fn request_numbers() {
        let r = Request::from_pairs(parse_query(b"sleep=250&alloc=64M&fork=5&ns=1&widen=1"));
        assert!(r.widen);
        assert_eq!(r.sleep_ms, Some(Ok(250)));
        assert_eq!(r.alloc_bytes, Some(Ok(64 << 20)));
        assert_eq!(r.forks, Some(Ok(5)));
        assert!(r.namespaces);
        assert!(!r.panic);

        let r = Request::from_pairs(parse_query(b"sleep=99999999&alloc=4096&ns=0&panic="));
        assert_eq!(r.sleep_ms, Some(Ok(MAX_SLEEP_MS)));
        assert_eq!(r.alloc_bytes, Some(Ok(4096)));
        assert!(!r.namespaces);
        assert!(!r.panic);

        let r = Request::from_pairs(parse_query(b"alloc=2k"));
        assert_eq!(r.alloc_bytes, Some(Ok(2048)));
    }

    #[test]
    fn request_refuses_bad_numbers() {
        let r = Request::from_pairs(parse_query(b"sleep=-1&alloc=99999999999G&fork=10001"));
        assert_eq!(
            r.sleep_ms,
            Some(Err("sleep=-1: not a decimal number".into()))
        );
        assert!(matches!(r.alloc_bytes, Some(Err(ref e)) if e.contains("too large")));
        assert!(matches!(r.forks, Some(Err(ref e)) if e.contains("at most")));

        for bad in [
            &b"fork="[..],
            b"fork=1.5",
            b"fork=+3",
            b"fork=99999999999999999999999",
        ] {
            let r = Request::from_pairs(parse_query(bad));
            assert!(matches!(r.forks, Some(Err(_))), "{}", lossy(bad));
        }
        let r = Request::from_pairs(parse_query(b"alloc=M"));
        assert!(matches!(r.alloc_bytes, Some(Err(_))));
    }

    #[test]
    fn unknown_keys_are_reported() {
        let r = Request::from_pairs(parse_query(b"bogus=1&Read=/x&bogus=2"));
        assert_eq!(r.unknown, vec!["bogus", "Read"]);
        assert!(r.read.is_empty());
    }
}

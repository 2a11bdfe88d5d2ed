//! A prison's settings in the admin's words: one directive line each, as it could be written
//! in httpd.conf, with every default spelled out. Used to carry a generation's prison across a
//! restart and to say which settings of a new configuration did not apply.

use super::{Prison, Tmp};

impl Prison {
    /// Every setting as a directive line (`PrisonBind /usr /usr ro`), in a fixed order.
    /// Arguments with spaces, quotes or control characters are quoted (Rust string syntax), so
    /// that each line stays one line.
    pub fn settings(&self) -> Vec<String> {
        let path = |p: &std::path::Path| quote(&p.to_string_lossy());
        let mut lines = vec![
            format!("PrisonName {}", self.name),
            format!("PrisonDir {}", path(&self.dir)),
            format!("PrisonSecurity {}", self.security),
        ];
        let addresses: Vec<String> = self
            .ip
            .v4
            .map(|a| a.to_string())
            .into_iter()
            .chain(self.ip.v6.map(|a| a.to_string()))
            .collect();
        if !addresses.is_empty() {
            lines.push(format!("PrisonIP {}", addresses.join(" ")));
        }
        if let Some(cpus) = &self.cpus {
            lines.push(format!("PrisonCPU {cpus}"));
        }
        if self.memory.report.is_some() || self.memory.deny.is_some() {
            lines.push(format!(
                "PrisonMemory {} {}",
                self.memory.report.unwrap_or(0),
                self.memory.deny.unwrap_or(0)
            ));
        }
        if let Some(n) = self.processes {
            lines.push(format!("PrisonProcesses {n}"));
        }
        match self.connect.as_deref() {
            None => {}
            Some([]) => lines.push("PrisonConnect none".to_owned()),
            Some(list) => lines.push(format!(
                "PrisonConnect {}",
                list.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        }
        match self.tmp {
            Tmp::Default => {}
            Tmp::Off => lines.push("PrisonTmp off".to_owned()),
            Tmp::Size(bytes) => lines.push(format!("PrisonTmp {bytes}")),
        }
        for bind in &self.binds {
            lines.push(format!(
                "PrisonBind {} {} {}",
                path(&bind.host),
                path(&bind.inside),
                if bind.writable { "rw" } else { "ro" }
            ));
        }
        lines
    }
}

fn quote(arg: &str) -> String {
    if arg.is_empty()
        || arg
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
    {
        format!("{arg:?}")
    } else {
        arg.to_owned()
    }
}

/// What changed from `old` to `new` (both from [`Prison::settings`]): the lines of `new` that
/// `old` lacks, and the lines of `old` that `new` lacks.
pub fn difference(old: &[String], new: &[String]) -> (Vec<String>, Vec<String>) {
    let missing = |from: &[String], other: &[String]| {
        from.iter()
            .filter(|line| !other.contains(line))
            .cloned()
            .collect()
    };
    (missing(new, old), missing(old, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Bind, MemoryLimits, Origins, PrisonIp, PrisonName, Security, Tmp};
    use std::path::PathBuf;

    fn prison() -> Prison {
        Prison {
            name: PrisonName::parse("www").unwrap(),
            dir: PathBuf::from("/srv/my prison"),
            ip: PrisonIp::default(),
            security: Security::All,
            cpus: None,
            memory: MemoryLimits {
                report: None,
                deny: Some(512 << 20),
            },
            binds: vec![Bind {
                host: "/usr".into(),
                inside: "/usr".into(),
                writable: false,
            }],
            processes: Some(64),
            runtime_dir: None,
            tmp: Tmp::Size(16 << 20),
            connect: None,
            origins: Origins::default(),
        }
    }

    #[test]
    fn every_setting_is_one_line_in_the_admins_words() {
        assert_eq!(
            prison().settings(),
            [
                "PrisonName www",
                "PrisonDir \"/srv/my prison\"",
                "PrisonSecurity ALL",
                "PrisonMemory 0 536870912",
                "PrisonProcesses 64",
                "PrisonTmp 16777216",
                "PrisonBind /usr /usr ro",
            ]
        );
        let mut odd = prison();
        odd.dir = PathBuf::from("/srv/a\nb");
        assert!(odd.settings().iter().all(|line| !line.contains('\n')));
    }

    #[test]
    fn the_difference_names_what_is_new_and_what_stays() {
        let old = prison().settings();
        let mut new = prison();
        new.binds.push(Bind {
            host: "/etc/wordpress".into(),
            inside: "/etc/hosts/wp".into(),
            writable: false,
        });
        new.processes = Some(128);
        let (not_applied, kept) = difference(&old, &new.settings());
        assert_eq!(
            not_applied,
            [
                "PrisonProcesses 128",
                "PrisonBind /etc/wordpress /etc/hosts/wp ro"
            ]
        );
        assert_eq!(kept, ["PrisonProcesses 64"]);
        assert_eq!(difference(&old, &old), (vec![], vec![]));
    }
}

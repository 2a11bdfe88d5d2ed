//! The MPM's ceiling: how many processes and threads httpd's own children of one generation
//! may reach, from what the MPM reports (`ap_mpm_query`). PrisonProcesses counts the tasks
//! beyond these (see README "PrisonProcesses"); PrisonMemory is compared with them at config
//! time.

use super::Prison;

/// Threads a worker/event child holds beyond ThreadsPerChild: its main thread and the
/// listener, and while it starts, the thread that starts the others (measured under worker
/// and event on httpd 2.4: a child with ThreadsPerChild 4 shows 6 threads, 7 while starting).
pub const EXTRA_THREADS: u64 = 3;

/// What the MPM says about its children (plain numbers, read by the httpd glue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MpmCeiling {
    /// A threaded MPM (worker, event); prefork is not.
    pub threaded: bool,
    /// ServerLimit: the most child processes of one generation (prefork: MaxRequestWorkers,
    /// which it never exceeds).
    pub processes: u64,
    /// ThreadsPerChild (1 for prefork).
    pub threads_per_child: u64,
    /// MaxRequestWorkers: the most requests served at once.
    pub max_request_workers: u64,
    /// mod_cgid is loaded: its daemon is one more process in the prison.
    pub cgid: bool,
}

impl MpmCeiling {
    /// The most tasks (processes and threads, as the kernel counts them) httpd's own children
    /// of one generation hold: what the prison's task limit leaves room for on top of
    /// PrisonProcesses.
    pub fn tasks(&self) -> u64 {
        let per_child = if self.threaded {
            self.threads_per_child + EXTRA_THREADS
        } else {
            1
        };
        self.processes.saturating_mul(per_child) + u64::from(self.cgid)
    }

    /// How many children are busy when MaxRequestWorkers requests are served at once.
    fn busy_children(&self) -> u64 {
        if self.threaded {
            self.max_request_workers
                .div_ceil(self.threads_per_child.max(1))
        } else {
            self.max_request_workers
        }
    }

    fn busy_children_text(&self) -> String {
        if self.threaded {
            format!(
                "{} children (MaxRequestWorkers {} / ThreadsPerChild {})",
                self.busy_children(),
                self.max_request_workers,
                self.threads_per_child
            )
        } else {
            format!("MaxRequestWorkers {}", self.max_request_workers)
        }
    }
}

/// What the configuration check warns about the prison's limits, given the MPM's ceiling and
/// `child_rss`, a lower bound of one child's resident memory (the checking process's own, after
/// loading the configuration: a child starts as a copy of it).
pub fn limit_warnings(prison: &Prison, mpm: &MpmCeiling, child_rss: Option<u64>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let (Some(deny), Some(rss)) = (prison.memory.deny, child_rss) {
        let needed = mpm.busy_children().saturating_mul(rss);
        if needed > deny {
            warnings.push(format!(
                "PrisonMemory deny {} is below {} x at least {} per child = {}: expect OOM kills \
                 under load (lower MaxRequestWorkers or raise PrisonMemory)",
                size(deny),
                mpm.busy_children_text(),
                size(rss),
                size(needed)
            ));
        }
    }
    if let Some(n) = prison.processes {
        if n < mpm.max_request_workers {
            warnings.push(format!(
                "PrisonProcesses {n} is below MaxRequestWorkers {}: when every request runs a \
                 CGI or a mail() (one process each), forks past {n} fail with EAGAIN. \
                 PrisonProcesses counts tasks beyond httpd's own children: the prison's limit is \
                 {n} + {} for the MPM's children and their threads = {}",
                mpm.max_request_workers,
                mpm.tasks(),
                n + mpm.tasks()
            ));
        }
    }
    warnings
}

/// Bytes for the admin: the largest binary unit that keeps one decimal.
fn size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("T", 40), ("G", 30), ("M", 20), ("k", 10)];
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift {
            let value = bytes as f64 / (1u64 << shift) as f64;
            return if value >= 10.0 || value.fract() == 0.0 {
                format!("{value:.0}{unit}")
            } else {
                format!("{value:.1}{unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MemoryLimits, Origins, PrisonIp, PrisonName, Security, Tmp};

    fn prison(deny: Option<u64>, processes: Option<u64>) -> Prison {
        Prison {
            name: PrisonName::parse("www").unwrap(),
            dir: "/srv/www".into(),
            ip: PrisonIp::default(),
            security: Security::All,
            cpus: None,
            memory: MemoryLimits { report: None, deny },
            binds: Vec::new(),
            processes,
            runtime_dir: None,
            tmp: Tmp::Default,
            connect: None,
            origins: Origins::default(),
        }
    }

    const PREFORK: MpmCeiling = MpmCeiling {
        threaded: false,
        processes: 150,
        threads_per_child: 1,
        max_request_workers: 150,
        cgid: false,
    };
    const EVENT: MpmCeiling = MpmCeiling {
        threaded: true,
        processes: 16,
        threads_per_child: 25,
        max_request_workers: 150,
        cgid: true,
    };

    #[test]
    fn the_ceiling_counts_children_their_threads_and_the_cgid_daemon() {
        assert_eq!(PREFORK.tasks(), 150);
        assert_eq!(EVENT.tasks(), 16 * 28 + 1);
    }

    #[test]
    fn debians_prefork_with_512m_is_warned_with_the_numbers() {
        let warnings = limit_warnings(&prison(Some(512 << 20), None), &PREFORK, Some(14 << 20));
        assert_eq!(
            warnings,
            [
                "PrisonMemory deny 512M is below MaxRequestWorkers 150 x at least 14M per child = \
              2.1G: expect OOM kills under load (lower MaxRequestWorkers or raise PrisonMemory)"
            ]
        );
        // Threads share a child's memory: event needs 6 children's worth.
        let warnings = limit_warnings(&prison(Some(64 << 20), None), &EVENT, Some(14 << 20));
        assert!(
            warnings[0].contains("6 children (MaxRequestWorkers 150 / ThreadsPerChild 25)"),
            "{warnings:?}"
        );
        // Enough memory, or nothing measured: no warning.
        assert!(limit_warnings(&prison(Some(4 << 30), None), &PREFORK, Some(14 << 20)).is_empty());
        assert!(limit_warnings(&prison(Some(1 << 20), None), &PREFORK, None).is_empty());
    }

    #[test]
    fn few_processes_for_many_workers_are_warned_with_the_limit_that_results() {
        let warnings = limit_warnings(&prison(None, Some(64)), &EVENT, None);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("PrisonProcesses 64 is below MaxRequestWorkers 150")
                && warnings[0].contains("64 + 449 for the MPM's children and their threads = 513"),
            "{warnings:?}"
        );
        assert!(limit_warnings(&prison(None, Some(200)), &EVENT, None).is_empty());
    }

    #[test]
    fn sizes_read_as_an_admin_writes_them() {
        assert_eq!(size(512 << 20), "512M");
        assert_eq!(size(150 * (14 << 20)), "2.1G");
        assert_eq!(size(1536), "1.5k");
        assert_eq!(size(100), "100 bytes");
    }
}

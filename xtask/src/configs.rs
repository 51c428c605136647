//! The backend configurations every kernel is tested with.
//!
//! The tests pass every `MAPWATCH_BACKENDS__*` variable on to the agent, so a
//! configuration is just a name and the variables it sets.

/// The three events; a configuration forces the backend of some of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    DoMmap,
    SecurityMmapFile,
    SecurityFileMprotect,
}

impl Event {
    pub const ALL: &[Event] = &[
        Event::DoMmap,
        Event::SecurityMmapFile,
        Event::SecurityFileMprotect,
    ];

    /// The event's name, as the agent spells it.
    pub fn name(self) -> &'static str {
        match self {
            Event::DoMmap => "do_mmap",
            Event::SecurityMmapFile => "security_mmap_file",
            Event::SecurityFileMprotect => "security_file_mprotect",
        }
    }

    /// The variable that forces this event's backend.
    pub fn variable(self) -> &'static str {
        match self {
            Event::DoMmap => DO_MMAP,
            Event::SecurityMmapFile => SECURITY_MMAP_FILE,
            Event::SecurityFileMprotect => SECURITY_FILE_MPROTECT,
        }
    }
}

/// The test suites' environment for one row of the matrix.
pub struct BackendConfig {
    /// Short name used in the serial markers, the report and `--config`.
    pub name: &'static str,
    /// Environment of the test binary (and through it, of the agent).
    pub env: &'static [(&'static str, &'static str)],
}

impl BackendConfig {
    /// The events whose backend this configuration forces (none: `auto`).
    pub fn forced(&self) -> Vec<Event> {
        Event::ALL
            .iter()
            .copied()
            .filter(|e| self.env.iter().any(|(k, _)| *k == e.variable()))
            .collect()
    }
}

const DO_MMAP: &str = "MAPWATCH_BACKENDS__DO_MMAP";
const SECURITY_MMAP_FILE: &str = "MAPWATCH_BACKENDS__SECURITY_MMAP_FILE";
const SECURITY_FILE_MPROTECT: &str = "MAPWATCH_BACKENDS__SECURITY_FILE_MPROTECT";

/// Every configuration, in the order they run and are reported.
pub const CONFIGS: &[BackendConfig] = &[
    BackendConfig {
        name: "auto",
        env: &[],
    },
    BackendConfig {
        name: "syscall_tracepoint",
        env: &[
            (DO_MMAP, "syscall_tracepoint"),
            (SECURITY_MMAP_FILE, "syscall_tracepoint"),
            (SECURITY_FILE_MPROTECT, "syscall_tracepoint"),
        ],
    },
    BackendConfig {
        name: "do_mmap=kprobe",
        env: &[(DO_MMAP, "kprobe")],
    },
    BackendConfig {
        name: "do_mmap=fexit",
        env: &[(DO_MMAP, "fexit")],
    },
    BackendConfig {
        name: "security_mmap_file=lsm",
        env: &[(SECURITY_MMAP_FILE, "lsm")],
    },
    BackendConfig {
        name: "security_mmap_file=fexit",
        env: &[(SECURITY_MMAP_FILE, "fexit")],
    },
    BackendConfig {
        name: "security_mmap_file=kprobe",
        env: &[(SECURITY_MMAP_FILE, "kprobe")],
    },
    BackendConfig {
        name: "security_file_mprotect=lsm",
        env: &[(SECURITY_FILE_MPROTECT, "lsm")],
    },
    BackendConfig {
        name: "security_file_mprotect=fexit",
        env: &[(SECURITY_FILE_MPROTECT, "fexit")],
    },
    BackendConfig {
        name: "security_file_mprotect=kprobe",
        env: &[(SECURITY_FILE_MPROTECT, "kprobe")],
    },
];

/// The configurations named in `wanted` (all when empty), in table order.
pub fn select(wanted: &[String]) -> anyhow::Result<Vec<&'static BackendConfig>> {
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !CONFIGS.iter().any(|c| c.name == w.as_str()))
    {
        let known: Vec<&str> = CONFIGS.iter().map(|c| c.name).collect();
        anyhow::bail!(
            "unknown configuration {unknown:?}; known: {}",
            known.join(", ")
        );
    }
    Ok(CONFIGS
        .iter()
        .filter(|c| wanted.is_empty() || wanted.iter().any(|w| w == c.name))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_a_marker_line() {
        for (i, c) in CONFIGS.iter().enumerate() {
            assert!(!c.name.contains(char::is_whitespace), "{}", c.name);
            assert!(CONFIGS[..i].iter().all(|o| o.name != c.name), "{}", c.name);
            for (key, value) in c.env {
                assert!(Event::ALL.iter().any(|e| e.variable() == *key), "{key}");
                assert!(!value.contains(['\'', ' ']), "{value}");
            }
        }
    }

    #[test]
    fn every_value_is_one_the_agent_accepts() {
        use mapwatch_config::{CliArgs, Config};
        for c in CONFIGS {
            let env = c.env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            let config = Config::load_from(&CliArgs::default(), env, None)
                .unwrap_or_else(|e| panic!("configuration {}: {e}", c.name));
            for (key, value) in c.env {
                let chosen = match *key {
                    DO_MMAP => config.backends.do_mmap.as_str(),
                    SECURITY_FILE_MPROTECT => config.backends.security_file_mprotect.as_str(),
                    _ => config.backends.security_mmap_file.as_str(),
                };
                assert_eq!(chosen, *value, "configuration {}", c.name);
            }
        }
    }

    #[test]
    fn selection_keeps_table_order_and_rejects_unknown_names() {
        let picked = select(&["do_mmap=fexit".into(), "auto".into()]).unwrap();
        let names: Vec<_> = picked.iter().map(|c| c.name).collect();
        assert_eq!(names, ["auto", "do_mmap=fexit"]);
        assert_eq!(select(&[]).unwrap().len(), CONFIGS.len());
        assert!(select(&["bogus".into()]).is_err());
    }
}

//! Names of the places configuration is read from that are not
//! configuration keys themselves (the default file, the variable naming a
//! file, the agent's log filter, the prefix of `MAPWATCH_*` keys), and how
//! a variable is read from the environment.

use std::collections::BTreeMap;

/// The configuration file read when neither `--config` nor `MAPWATCH_CONFIG`
/// names one. It is optional: if it does not exist, defaults apply.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mapwatch/mapwatch.toml";

/// Environment variable naming the configuration file (beaten by `--config`).
pub const CONFIG_PATH_ENV: &str = "MAPWATCH_CONFIG";

/// Environment variable holding the agent's own log filter. It is read by the
/// agent, not by this crate, and is never treated as a configuration key.
pub const LOG_FILTER_ENV: &str = "MAPWATCH_LOG";

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "MAPWATCH_";

/// A variable of `env` that is set to something other than blanks; empty
/// variables count as unset.
pub(crate) fn env_get<'a>(env: &'a BTreeMap<String, String>, var: &str) -> Option<&'a str> {
    env.get(var)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

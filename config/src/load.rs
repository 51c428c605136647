//! Loading: reading each source into its layers, lowest precedence first
//! (one submodule per source), then extracting and validating the merged
//! configuration.

mod file;
mod flags;
mod mapwatch_env;
mod otel_env;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cli::CliArgs;
use crate::ctx::Ctx;
use crate::error::ConfigError;
use crate::extract;
use crate::layers::Layers;
use crate::model::Config;
use crate::sources::{CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH, ENV_PREFIX};
use crate::validate;

impl Config {
    /// Loads the configuration from all layers, reading `environment`
    /// instead of the process environment, and the default file
    /// [`DEFAULT_CONFIG_PATH`] if it exists and no other file is named.
    ///
    /// Later duplicates in `environment` win. See the [crate docs](crate)
    /// for the layers and their precedence.
    ///
    /// ```
    /// use mapwatch_config::{CliArgs, Config};
    ///
    /// let env = [("MAPWATCH_RING_BUFFER__SIZE_BYTES".to_string(), "16384".to_string())];
    /// # let env: Vec<(String, String)> = env.into();
    /// # // Do not depend on whether this machine has /etc/mapwatch/mapwatch.toml.
    /// # let config = Config::load_from(&CliArgs::default(), env.clone(), None)?;
    /// # if false {
    /// let config = Config::load(&CliArgs::default(), env)?;
    /// # }
    /// assert_eq!(config.ring_buffer.size_bytes, 16384);
    /// # Ok::<(), mapwatch_config::ConfigError>(())
    /// ```
    pub fn load<I>(cli: &CliArgs, environment: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        Config::load_from(cli, environment, Some(Path::new(DEFAULT_CONFIG_PATH)))
    }

    /// Like [`Config::load`], with the default file given explicitly:
    /// `default_file` is read when neither `--config` nor `MAPWATCH_CONFIG`
    /// names a file, and only if it exists; `None` means no default file.
    ///
    /// ```
    /// use mapwatch_config::{CliArgs, Config, ConfigError, Origin};
    ///
    /// let env = [("MAPWATCH_OTLP__PROTOCOL".to_string(), "carrier-pigeon".to_string())];
    /// let err = Config::load_from(&CliArgs::default(), env, None).unwrap_err();
    /// assert!(matches!(&err, ConfigError::InvalidValue { key, origin: Origin::Env(var), .. }
    ///     if key == "otlp.protocol" && var == "MAPWATCH_OTLP__PROTOCOL"));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid value \"carrier-pigeon\" for `otlp.protocol` from environment variable \
    ///      MAPWATCH_OTLP__PROTOCOL: expected one of: grpc, http/protobuf",
    /// );
    /// ```
    pub fn load_from<I>(
        cli: &CliArgs,
        environment: I,
        default_file: Option<&Path>,
    ) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let env: BTreeMap<String, String> = environment.into_iter().collect();
        let mut layers = Layers::default();
        file::push(&mut layers, cli, &env, default_file)?;
        otel_env::push(&mut layers, &env)?;
        mapwatch_env::push(&mut layers, &env)?;
        flags::push(&mut layers, cli);

        let figment = layers.figment();
        let ctx = Ctx::new(&figment, &layers);
        let config = extract::config(&ctx)?;
        validate::validate(&config, &ctx)?;
        Ok(config)
    }

    /// Loads the configuration from the process environment and
    /// [`DEFAULT_CONFIG_PATH`]; what the agent calls at start-up.
    ///
    /// A `MAPWATCH_*` or `OTEL_*` variable that is not valid UTF-8 is an
    /// error; other variables are ignored.
    ///
    /// ```no_run
    /// use clap::Parser;
    ///
    /// #[derive(Parser)]
    /// struct Agent {
    ///     #[command(flatten)]
    ///     config: mapwatch_config::CliArgs,
    /// }
    ///
    /// let agent = Agent::parse();
    /// let config = match mapwatch_config::Config::from_process(&agent.config) {
    ///     Ok(config) => config,
    ///     Err(err) => {
    ///         eprintln!("mapwatch: {err}");
    ///         std::process::exit(2);
    ///     }
    /// };
    /// # let _ = config;
    /// ```
    pub fn from_process(cli: &CliArgs) -> Result<Config, ConfigError> {
        let env = process_env(std::env::vars_os())?;
        Config::load(cli, env)
    }

    /// The configuration file [`Config::from_process`] reads, if any: the
    /// one named by `--config` or `MAPWATCH_CONFIG`, else
    /// [`DEFAULT_CONFIG_PATH`] if it exists.
    pub fn file_in_use(cli: &CliArgs) -> Option<PathBuf> {
        if let Some(path) = &cli.config {
            return Some(path.clone());
        }
        if let Some(path) = std::env::var_os(CONFIG_PATH_ENV).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let default = Path::new(DEFAULT_CONFIG_PATH);
        default.exists().then(|| default.to_path_buf())
    }
}

/// Keeps the UTF-8 variables; a non-UTF-8 value of a variable this crate
/// reads is an error.
fn process_env(
    vars: impl Iterator<Item = (OsString, OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    use std::os::unix::ffi::OsStringExt;

    let mut out = Vec::new();
    for (name, value) in vars {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => out.push((name, value)),
            Err(value) if name.starts_with(ENV_PREFIX) || name.starts_with("OTEL_") => {
                let lossy = format!("{:?}", value.to_string_lossy());
                let source = match String::from_utf8(value.into_vec()) {
                    Err(err) => err,
                    // Cannot happen: into_string just failed on these bytes.
                    Ok(_) => continue,
                };
                return Err(ConfigError::NotUnicode {
                    var: name,
                    value: lossy,
                    source,
                });
            }
            Err(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn process_env_keeps_utf8_and_skips_foreign_garbage() {
        let vars = vec![
            (os("MAPWATCH_CONSOLE"), os("never")),
            (os("LANG_JUNK"), OsString::from_vec(vec![0xff, 0xfe])),
            (OsString::from_vec(vec![0xff]), os("x")),
        ];
        let env = process_env(vars.into_iter()).unwrap();
        assert_eq!(
            env,
            vec![("MAPWATCH_CONSOLE".to_string(), "never".to_string())]
        );
    }

    #[test]
    fn process_env_rejects_non_utf8_in_variables_it_reads() {
        for var in ["MAPWATCH_SERVICE__NAME", "OTEL_SERVICE_NAME"] {
            let vars = vec![(os(var), OsString::from_vec(b"caf\xe9".to_vec()))];
            let err = process_env(vars.into_iter()).unwrap_err();
            assert!(matches!(&err, ConfigError::NotUnicode { var: v, .. } if v == var));
            let msg = err.to_string();
            assert!(
                msg.contains(var) && msg.contains("caf") && msg.contains("UTF-8"),
                "{msg}"
            );
        }
    }
}

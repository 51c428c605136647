//! Layer 2: the TOML file named by `--config`, else by `MAPWATCH_CONFIG`,
//! else the default file if it exists.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Value};

use crate::cli::CliArgs;
use crate::error::{ConfigError, Origin};
use crate::layers::Layers;
use crate::sources::{CONFIG_PATH_ENV, env_get};

/// Reads the file, if one is named or the default one exists, as one layer.
pub(super) fn push(
    layers: &mut Layers,
    cli: &CliArgs,
    env: &BTreeMap<String, String>,
    default_file: Option<&Path>,
) -> Result<(), ConfigError> {
    let Some((path, named_by)) = which(cli, env, default_file) else {
        return Ok(());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if named_by == Origin::Default && err.kind() == io::ErrorKind::NotFound => {
            return Ok(());
        }
        Err(source) => {
            return Err(ConfigError::ReadFile {
                path,
                named_by,
                source,
            });
        }
    };
    let table: toml::Table = toml::from_str(&text).map_err(|err| toml_error(&path, &text, err))?;
    let mut dict = toml_to_dict(table);
    normalize_header_names(&mut dict);
    layers.push(Origin::File(path), dict, None);
    Ok(())
}

/// The file to read and what named it: `--config`, `MAPWATCH_CONFIG` or,
/// as [`Origin::Default`], the default file.
fn which(
    cli: &CliArgs,
    env: &BTreeMap<String, String>,
    default_file: Option<&Path>,
) -> Option<(PathBuf, Origin)> {
    if let Some(path) = &cli.config {
        Some((path.clone(), Origin::Cli("--config".to_string())))
    } else if let Some(path) = env_get(env, CONFIG_PATH_ENV) {
        Some((
            PathBuf::from(path),
            Origin::Env(CONFIG_PATH_ENV.to_string()),
        ))
    } else {
        default_file.map(|path| (path.to_path_buf(), Origin::Default))
    }
}

/// Lowercases the names in `otlp.headers` so that layers merge them
/// case-insensitively.
fn normalize_header_names(dict: &mut Dict) {
    if let Some(Value::Dict(_, otlp)) = dict.get_mut("otlp")
        && let Some(Value::Dict(_, headers)) = otlp.get_mut("headers")
    {
        *headers = std::mem::take(headers)
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
    }
}

/// A TOML syntax error, with its line and column (from 1, in characters).
fn toml_error(path: &Path, text: &str, err: toml::de::Error) -> ConfigError {
    let offset = err.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    let message = err.message().trim().replace('\n', " ");
    ConfigError::Toml {
        path: path.to_path_buf(),
        line,
        column,
        message,
        source: Box::new(err),
    }
}

/// TOML values as figment values, tables as dictionaries.
fn toml_to_dict(table: toml::Table) -> Dict {
    table
        .into_iter()
        .map(|(k, v)| (k, toml_to_value(v)))
        .collect()
}

fn toml_to_value(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::from(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::from(b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(items) => {
            Value::from(items.into_iter().map(toml_to_value).collect::<Vec<_>>())
        }
        toml::Value::Table(table) => Value::from(toml_to_dict(table)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_error_position_counts_lines_and_characters() {
        let text = "a = 1\nbé = ]\n";
        let err = toml::from_str::<toml::Table>(text).unwrap_err();
        let ConfigError::Toml { line, column, .. } = toml_error(Path::new("/x.toml"), text, err)
        else {
            panic!("not a TOML error");
        };
        assert_eq!((line, column), (2, 6));
    }
}

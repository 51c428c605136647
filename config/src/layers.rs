//! The stack of configuration layers: one figment provider per source of
//! values (the file, each environment variable, each flag), so that every
//! merged value can be traced back to exactly where it came from. Also the
//! small builders of a layer's data ([`nest`], [`list_dict`]).

use std::collections::HashMap;

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use crate::error::Origin;

/// One provider per source of values, so that every value is tagged with
/// exactly where it came from. Later layers win.
#[derive(Default)]
pub(crate) struct Layers {
    layers: Vec<Layer>,
    /// The text the user gave, for environment variables and flags.
    raw: HashMap<Origin, String>,
}

struct Layer {
    index: usize,
    origin: Origin,
    data: Dict,
}

/// Tags a layer's values so that [`Layers::rank_of`] can find the layer again.
const LAYER_SOURCE_PREFIX: &str = "mapwatch-layer-";

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.to_string()).source(Source::Custom(format!(
            "{LAYER_SOURCE_PREFIX}{}",
            self.index
        )))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

impl Layers {
    /// Adds a layer on top; `raw` is the user's own text, shown in messages.
    pub(crate) fn push(&mut self, origin: Origin, data: Dict, raw: Option<String>) {
        if let Some(raw) = raw {
            self.raw.insert(origin.clone(), raw);
        }
        self.layers.push(Layer {
            index: self.layers.len(),
            origin,
            data,
        });
    }

    /// Adds the layer of environment variable `var`, whose text is `raw`.
    pub(crate) fn push_env(&mut self, var: &str, raw: &str, data: Dict) {
        self.push(Origin::Env(var.to_string()), data, Some(raw.to_string()));
    }

    /// Adds the layer of command-line flag `flag`, setting `path` to `value`.
    pub(crate) fn push_cli(&mut self, flag: &str, raw: String, path: &[&str], value: Value) {
        self.push(Origin::Cli(flag.to_string()), nest(path, value), Some(raw));
    }

    /// All layers merged, lowest first.
    pub(crate) fn figment(&self) -> Figment {
        self.layers.iter().fold(Figment::new(), |figment, layer| {
            figment.merge(Layer {
                index: layer.index,
                origin: layer.origin.clone(),
                data: layer.data.clone(),
            })
        })
    }

    /// The position of the layer a merged value's `metadata` belongs to
    /// (higher wins); `None` for values no layer set.
    pub(crate) fn rank_of(&self, metadata: Option<&Metadata>) -> Option<usize> {
        metadata
            .and_then(|m| m.source.as_ref())
            .and_then(|s| s.custom())
            .and_then(|s| s.strip_prefix(LAYER_SOURCE_PREFIX))
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < self.layers.len())
    }

    /// Where the layer at `rank` came from.
    pub(crate) fn origin(&self, rank: usize) -> Option<&Origin> {
        self.layers.get(rank).map(|layer| &layer.origin)
    }

    /// The text the user gave for the layer from `origin`, if it was a
    /// variable or a flag.
    pub(crate) fn raw(&self, origin: &Origin) -> Option<&str> {
        self.raw.get(origin).map(String::as_str)
    }
}

/// A dictionary holding `value` at `path`.
pub(crate) fn nest(path: &[&str], value: Value) -> Dict {
    let mut value = value;
    for key in path.iter().skip(1).rev() {
        value = Value::from(Dict::from([(key.to_string(), value)]));
    }
    Dict::from([(path[0].to_string(), value)])
}

/// A table of string values from `name=value` pairs.
pub(crate) fn list_dict(pairs: Vec<(String, String)>) -> Value {
    Value::from(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect::<Dict>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nest_builds_nested_tables() {
        let dict = nest(&["a", "b", "c"], Value::from(1u8));
        let value = Value::from(dict);
        assert_eq!(value.find_ref("a.b.c").and_then(Value::to_u128), Some(1));
    }
}

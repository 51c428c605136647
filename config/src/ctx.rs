//! Provenance of merged values: which layer set a key, where that layer
//! came from, and how to show the value in a message (the user's own text,
//! header values hidden), and the error for a value that is not allowed.
//! Shared by extraction and validation.

use figment::{Figment, Metadata};

use crate::error::{ConfigError, Origin, Problem};
use crate::kv;
use crate::layers::Layers;

/// Looks up where values came from, and renders them for messages.
pub(crate) struct Ctx<'a> {
    figment: &'a Figment,
    layers: &'a Layers,
}

/// Where the value at a key came from: its layer's position (higher wins;
/// `None` for the built-in default) and its origin.
pub(crate) struct Found {
    pub rank: Option<usize>,
    pub origin: Origin,
}

impl<'a> Ctx<'a> {
    /// Provenance of the values of `figment`, which merges `layers`.
    pub(crate) fn new(figment: &'a Figment, layers: &'a Layers) -> Self {
        Ctx { figment, layers }
    }

    /// The merged values.
    pub(crate) fn figment(&self) -> &'a Figment {
        self.figment
    }

    /// The layer a value's `metadata` belongs to, or the built-in default.
    pub(crate) fn origin_of_metadata(&self, metadata: Option<&Metadata>) -> Found {
        let rank = self.layers.rank_of(metadata);
        match rank.and_then(|i| self.layers.origin(i)) {
            Some(origin) => Found {
                rank,
                origin: origin.clone(),
            },
            None => Found {
                rank: None,
                origin: Origin::Default,
            },
        }
    }

    /// Where the value at `path` came from. A key segment containing a dot
    /// cannot be looked up; its nearest parent is used instead.
    pub(crate) fn find(&self, path: &[&str]) -> Found {
        let usable = path.iter().take_while(|seg| !seg.contains('.')).count();
        let path = &path[..usable];
        if path.is_empty() {
            return Found {
                rank: None,
                origin: Origin::Default,
            };
        }
        self.origin_of_metadata(self.figment.find_metadata(&path.join(".")))
    }

    /// An error for the value at `path`, naming where it came from; `shown`
    /// renders the value when the user's own text is not at hand (file or
    /// default).
    pub(crate) fn invalid(&self, path: &[&str], shown: String, source: Problem) -> ConfigError {
        let found = self.find(path);
        let key = path.join(".");
        let value = self.render(&key, &found.origin, || shown);
        ConfigError::InvalidValue {
            key,
            origin: found.origin,
            value,
            source: Box::new(source),
        }
    }

    /// The value to show: the user's own text for variables and flags
    /// (header values hidden), else `fallback`.
    pub(crate) fn render(
        &self,
        key: &str,
        origin: &Origin,
        fallback: impl FnOnce() -> String,
    ) -> String {
        let in_headers = key.starts_with("otlp.headers.");
        match self.layers.raw(origin) {
            Some(_) if in_headers => "\"***\"".to_string(),
            Some(raw) if key == "otlp.headers" => format!("{:?}", kv::redact_list(raw)),
            Some(raw) => format!("{raw:?}"),
            None if in_headers => "\"***\"".to_string(),
            None => fallback(),
        }
    }
}

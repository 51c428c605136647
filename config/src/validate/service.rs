//! `service`: a non-blank name; resource attribute keys are not blank and
//! are not `service.name`, which lives in `service.name`.

use crate::ctx::Ctx;
use crate::error::{ConfigError, Problem};
use crate::model::ServiceConfig;

pub(super) fn check(service: &ServiceConfig, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    if service.name.trim().is_empty() {
        return Err(ctx.invalid(
            &["service", "name"],
            format!("{:?}", service.name),
            Problem::Empty,
        ));
    }
    for key in service.resource_attributes.keys() {
        let problem = if key.trim().is_empty() {
            Problem::Empty
        } else if key == "service.name" {
            Problem::ServiceNameAttribute
        } else {
            continue;
        };
        // Blames the whole map and shows the offending key, not its value.
        let found = ctx.find(&["service", "resource_attributes", key]);
        return Err(ConfigError::InvalidValue {
            key: "service.resource_attributes".to_string(),
            origin: found.origin,
            value: format!("{key:?}"),
            source: Box::new(problem),
        });
    }
    Ok(())
}

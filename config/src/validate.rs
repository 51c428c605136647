//! Checks that need the merged configuration: one module per section, run
//! in a fixed order, the first failure being the one reported. `backends`
//! and `console` have no module: every value their types accept is valid.

mod batch;
mod enforce;
mod events;
mod exceptions;
mod filter;
mod hot_spots;
mod libraries;
mod otlp;
mod process;
mod rate_limit;
mod ring_buffer;
mod service;
mod signals;
mod spool;
mod volume;

use crate::ctx::Ctx;
use crate::error::ConfigError;
use crate::model::Config;

/// Checks every section of `c`; `ctx` says where each value came from.
pub(crate) fn validate(c: &Config, ctx: &Ctx<'_>) -> Result<(), ConfigError> {
    events::check(&c.events, ctx)?;
    otlp::check(&c.otlp, ctx)?;
    batch::check(&c.batch, ctx)?;
    spool::check(&c.spool, ctx)?;
    ring_buffer::check(&c.ring_buffer, ctx)?;
    filter::check(&c.filter, ctx)?;
    signals::check(&c.signals, ctx)?;
    process::check(&c.process, ctx)?;
    rate_limit::check(&c.rate_limit, ctx)?;
    enforce::check(c, ctx)?;
    service::check(&c.service, ctx)?;
    libraries::check(&c.libraries, ctx)?;
    volume::check(&c.volume, ctx)?;
    hot_spots::check(&c.hot_spots, ctx)?;
    exceptions::check(&c.exceptions, ctx)
}

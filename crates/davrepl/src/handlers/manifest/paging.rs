//! Sending a manifest: streamed when unranged, two passes for `Range: rows=`.

use std::sync::Arc;

use bytes::Bytes;
use davrepl_proto::rows::{self};
use davrepl_proto::xml::XmlWriter;
use davrepl_store::{ReplStore, Seq, StoreError};
use http::{HeaderValue, Response, StatusCode, header};

use super::*;
use crate::body::{self, DavBody};
use crate::error::DavResult;
use crate::handlers::Ctx;
use crate::handlers::multistatus::{self, Rows};

pub(super) fn manifest_response(body: DavBody, content_range: Option<String>) -> Response<DavBody> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::MULTI_STATUS;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=\"utf-8\""),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("rows"));
    if let Some(cr) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    r
}

/// Computes and sends the manifest: streamed when unranged, two passes when ranged.
pub(super) async fn respond<S: ReplStore>(
    ctx: &Ctx<S>,
    m: Manifest,
) -> DavResult<Response<DavBody>> {
    let upper = ctx.store().watermark().await?;
    // A collblob that has seen changes the store does not have comes from the store's future:
    // the store was restored from a backup or lost its last writes. Its sequence numbers will
    // be handed out again to other changes, so the client must start over, never skip them.
    // Its watermark was one of the store's; a version it saw (its own upload) may lie above
    // the watermark while an older writer is still in flight, but never above the horizon.
    let max_seen = m.plan.seen.iter().map(|&(_, v)| v).max().unwrap_or(0);
    let future_seen = max_seen > upper && max_seen > ctx.store().horizon().await?;
    if m.plan.watermark > upper || future_seen {
        return Err(invalid_collblob(
            "it is newer than the store (was the store restored from a backup?)",
        ));
    }
    let specs = row_specs(ctx)?;
    let plan = Arc::new(m.plan);
    let mut upper = upper;
    if let Some(wait) = crate::handlers::wait::prefer_wait(ctx)?
        && !plan.first_sync
    {
        // Long poll: held while the delta would be empty.
        crate::handlers::wait::hold(ctx, &plan.scope, wait, || {
            let plan = plan.clone();
            async move {
                let now = ctx.store().watermark().await?;
                let mut probe = Engine::new(ctx.shared.clone(), plan.clone(), now);
                probe.fetch().await?;
                if plan.watermark < probe.log.low_water() {
                    return Ok(true); // answered (with 475) at once
                }
                Ok(probe.next().await?.is_some())
            }
        })
        .await?;
        upper = ctx.store().watermark().await?;
    }
    let mut engine = Engine::new(ctx.shared.clone(), plan.clone(), upper);
    engine.fetch().await?;
    if !plan.first_sync && plan.watermark < engine.log.low_water() {
        return Err(invalid_collblob(
            "it is older than the retained change history",
        ));
    }
    let Some(specs) = specs else {
        // Unranged: every row up to `upper` is delivered, so the new collblob is known before
        // the first byte is written and the rows can stream.
        let acks_above: Vec<(u64, u64)> = Vec::new();
        let blob = m.base.issue(upper, acks_above);
        return Ok(manifest_response(
            stream_rows(engine, m.output, blob, ctx.shared.config.strict_empty_repl),
            None,
        ));
    };
    // Pass 1: count.
    let mut total: u64 = 0;
    while engine.next().await?.is_some() {
        total += 1;
    }
    let Ok(mut ranges) = rows::resolve(&specs, total) else {
        return Ok(crate::handlers::range_not_satisfiable("rows", total));
    };
    cap_ranges(&mut ranges, ctx.shared.config.limits.max_rows_per_response);
    let in_range = |i: u64| ranges.iter().any(|(a, b)| (*a..=*b).contains(&i));
    let blob = if ranges.is_empty() {
        // Count-only (`rows=-0`) or nothing to deliver: nothing is marked seen.
        match &m.input_blob {
            Some(t) if !plan.first_sync => t.clone(),
            _ => m
                .base
                .issue(plan.watermark, plan.seen.iter().copied().collect()),
        }
    } else {
        String::new()
    };
    // Pass 2: collect the delivered rows (bounded by the per-response cap).
    let mut delivered = Vec::new();
    let mut first_undelivered: Option<Seq> = None;
    if !ranges.is_empty() {
        let mut engine = Engine::new(ctx.shared.clone(), plan.clone(), upper);
        let mut i = 0u64;
        while let Some(row) = engine.next().await? {
            if in_range(i) {
                delivered.push(row);
            } else {
                let s = row.seq();
                first_undelivered = Some(first_undelivered.map_or(s, |f| f.min(s)));
            }
            i += 1;
        }
    }
    let blob = if ranges.is_empty() {
        blob
    } else {
        let new_mark = first_undelivered
            .map_or(upper, |f| upper.min(f.saturating_sub(1)))
            .max(plan.watermark);
        let mut seen: Vec<(u64, u64)> = plan
            .seen
            .iter()
            .copied()
            .chain(plan.acks.iter().copied())
            .chain(delivered.iter().map(Row::key))
            .filter(|(_, v)| *v > new_mark)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        m.base.issue(new_mark, seen)
    };
    let mut w = XmlWriter::new();
    m.output.open_root(&mut w);
    write_repl(
        &mut w,
        &blob,
        delivered.is_empty() && ctx.shared.config.strict_empty_repl,
    );
    for row in &delivered {
        m.output.write_row(&mut w, row, true);
    }
    w.end("a:multistatus");
    let cr = rows::content_range(&ranges, total);
    Ok(manifest_response(body::full(w.finish()), Some(cr)))
}

pub(super) fn cap_ranges(ranges: &mut Vec<(u64, u64)>, cap: u64) {
    let mut left = cap;
    ranges.retain_mut(|(a, b)| {
        if left == 0 {
            return false;
        }
        let n = *b - *a + 1;
        if n > left {
            *b = *a + left - 1;
            left = 0;
        } else {
            left -= n;
        }
        true
    });
}

/// The rows of an unranged manifest: the root and the collblob first (with the strict switch,
/// an empty `repl` only when there are no rows at all), then rows a chunk at a time.
struct ManifestRows<S> {
    engine: Engine<S>,
    output: Output,
    /// The collblob, until the opening chunk is written.
    blob: Option<String>,
    strict_empty: bool,
}

impl<S: ReplStore> Rows for ManifestRows<S> {
    async fn next_chunk(&mut self, w: &mut XmlWriter) -> Result<bool, StoreError> {
        if let Some(blob) = self.blob.take() {
            self.output.open_root(w);
            let first = self.engine.next().await?;
            write_repl(w, &blob, self.strict_empty && first.is_none());
            return Ok(match first {
                Some(row) => {
                    self.output.write_row(w, &row, true);
                    false
                }
                None => true,
            });
        }
        for _ in 0..ROWS_PER_CHUNK {
            match self.engine.next().await? {
                Some(row) => self.output.write_row(w, &row, true),
                None => return Ok(true),
            }
        }
        Ok(false)
    }
}

/// Streams an unranged manifest.
pub(super) fn stream_rows<S: ReplStore>(
    engine: Engine<S>,
    output: Output,
    blob: String,
    strict_empty: bool,
) -> DavBody {
    let rows = ManifestRows {
        engine,
        output,
        blob: Some(blob),
        strict_empty,
    };
    multistatus::stream(Bytes::new(), rows, "a:multistatus")
}

//! Plain SEARCH (no `repl` element): an Exchange SQL query over the current tree.

use std::collections::HashSet;

use davrepl_proto::REPL_NS;
use davrepl_proto::rows::{self};
use davrepl_proto::sql::{self};
use davrepl_proto::xml::XmlWriter;
use davrepl_store::{Entry, ListOptions, ReplStore};
use http::{Response, StatusCode};

use super::*;
use crate::body::{self, DavBody};
use crate::error::{DavError, DavResult};
use crate::handlers::Ctx;
use crate::live;

/// Plain SEARCH (no `repl`): the query's matches, optionally sorted and ranged.
pub(super) async fn plain_search<S: ReplStore>(
    ctx: &Ctx<S>,
    text: &str,
) -> DavResult<Response<DavBody>> {
    let limits = ctx.shared.config.limits;
    let query = sql::parse(text, &limits.sql)?;
    let scope = checked_scope(ctx, &query.scope.url)?;
    let scope_meta = ctx.store().head(&scope).await?;
    if !scope_meta.is_collection() {
        return Err(DavError::bad_request("the scope is not a collection"));
    }
    let mut prefixes = Prefixes::new(REPL_NS);
    let columns = sql_columns(&query, &mut prefixes)?;
    let (depth, collections_only) = traversal_depth(query.scope.traversal);
    let with_props = needs_props(&columns, query.filter.as_ref()) || !query.order_by.is_empty();
    let plan = Plan {
        scope: scope.clone(),
        depth,
        include_scope: false,
        collections_only,
        needs_props: with_props,
        filter: Filter::new(query.filter.clone(), &limits),
        checksums: false, // filled below, for the selected rows only
        first_sync: true,
        watermark: 0,
        seen: HashSet::new(),
        acks: HashSet::new(),
    };
    let mut results: Vec<Entry> = Vec::new();
    let mut after = None;
    loop {
        let page = ctx
            .store()
            .list(
                &scope,
                ListOptions::new(depth, limits.page_size)
                    .after(after)
                    .with_props(with_props),
            )
            .await?;
        for e in page.entries {
            if collections_only && !e.meta.is_collection() {
                continue;
            }
            let passes = plan.matches(&e.meta, &e.props).map_err(|e| {
                DavError::new(StatusCode::UNPROCESSABLE_ENTITY, e.message().to_owned())
            })?;
            if !passes {
                continue;
            }
            if results.len() == limits.max_search_results {
                return Err(DavError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "more than {} results; narrow the query",
                        limits.max_search_results
                    ),
                ));
            }
            results.push(e);
        }
        // Filtering is CPU work: let other requests run between pages.
        yield_now().await;
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    if !query.order_by.is_empty() {
        // Keys computed once per result, compared under a total order (mixed numbers and
        // text never make the sort inconsistent).
        let mut keyed: Vec<(Vec<sql::SortKey>, Entry)> = results
            .into_iter()
            .map(|e| {
                let keys = query
                    .order_by
                    .iter()
                    .map(|(prop, _)| {
                        let (ns, local) = sql::split_prop(prop);
                        sql::SortKey::of(
                            live::lookup(&e.meta, &e.props, ns, local).map(live::sql_value),
                        )
                    })
                    .collect();
                (keys, e)
            })
            .collect();
        keyed.sort_by(|(x, _), (y, _)| {
            for ((a, b), (_, asc)) in x.iter().zip(y).zip(&query.order_by) {
                let ord = if *asc { a.cmp(b) } else { b.cmp(a) };
                if ord.is_ne() {
                    return ord;
                }
            }
            std::cmp::Ordering::Equal
        });
        results = keyed.into_iter().map(|(_, e)| e).collect();
    }
    let total = results.len() as u64;
    let (selected, content_range) = match row_specs(ctx)? {
        None => ((0..total).collect::<Vec<_>>(), None),
        Some(specs) => {
            let Ok(mut ranges) = rows::resolve(&specs, total) else {
                return Ok(crate::handlers::range_not_satisfiable("rows", total));
            };
            cap_ranges(&mut ranges, limits.max_rows_per_response);
            let sel = ranges.iter().flat_map(|(a, b)| *a..=*b).collect();
            (sel, Some(rows::content_range(&ranges, total)))
        }
    };
    if columns.has_checksums() {
        let chosen: std::collections::HashSet<u64> = selected.iter().copied().collect();
        let metas = results
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| chosen.contains(&(*i as u64)))
            .map(|(_, r)| &mut r.meta);
        live::fill_all_digests(ctx.store(), metas).await?;
    }
    let output = Output::new(ctx, columns, prefixes)?;
    let mut w = XmlWriter::new();
    output.open_root(&mut w);
    for i in selected {
        let e = &results[i as usize];
        let row = Row::Change {
            seq: e.meta.version,
            meta: e.meta.clone(),
            props: e.props.clone(),
        };
        output.write_row(&mut w, &row, false);
    }
    w.end("a:multistatus");
    Ok(manifest_response(body::full(w.finish()), content_range))
}

//! Conformance cases every [`ReplStore`](davrepl_store::ReplStore) must pass.
//!
//! Each case is a `pub async fn(&S)` in [`cases`]; the [`conformance!`] macro expands into one
//! `#[tokio::test]` per case, so a backend crate runs the whole contract with one line in its
//! `tests/` folder:
//!
//! ```ignore
//! davrepl_testkit::conformance!(davrepl_store::MemStore::new());
//! // or, for a store that is built asynchronously:
//! davrepl_testkit::conformance!(@future my_store::open_for_tests());
//! // or, when the backend may be absent (an external server): a future giving an Option;
//! // `None` skips the case, so say why loudly before returning it.
//! davrepl_testkit::conformance!(@maybe my_store::open_if_available());
//! ```
//!
//! The expression is evaluated once per case, so every case gets a fresh store. The API of this
//! crate is not covered by semver: cases are added as the contract grows.

pub mod broken;
pub mod cases;
pub mod faulty;
mod helpers;

pub use helpers::*;

/// Expands into one `#[tokio::test]` per conformance case. See the crate docs.
#[macro_export]
macro_rules! conformance {
    (@future $make:expr) => {
        $crate::conformance!(@maybe async { ::core::option::Option::Some($make.await) });
    };
    (@maybe $make:expr) => {
        $crate::conformance!(@cases $make;
            crud_item, put_needs_parent, put_onto_collection_fails, mkcol_rules, read_range,
            list_depths_and_pages, delete_tree_leaves_tombstones, root_is_immutable,
            move_keeps_repl_uid, move_and_copy_overwrite, copy_makes_new_repl_uid,
            copy_depth_zero, transfer_onto_itself_fails, recreate_gets_new_repl_uid,
            every_mutation_bumps_version_and_logs, content_tag_follows_membership,
            dead_properties, low_water_mark, conditions_if_header, conditions_entity_tags,
            failed_condition_has_no_side_effect, changes_scope_and_paging,
            superseded_changes_reported_once, aborted_body_writes_nothing, too_large_writes_nothing,
            secret_is_stable, large_content_round_trip, read_condition, cas_race_single_winner,
            cas_race_no_lost_update, gap_free_feed, lock_grant_conflict_unlock,
            lock_depth_and_membership, lock_refresh_and_expiry, lock_unmapped_url,
            lock_belongs_to_its_principal, lock_with_conditional_write, locks_are_not_content,
            lock_race_single_winner, digests_follow_content, client_modification_time,
            checksum_mismatch_writes_nothing, quota_refuses_and_writes_nothing,
            subscriptions_are_cursors
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                // `None`: the backend is not available here and said so loudly; skip.
                let ::core::option::Option::Some(store) = $make.await else { return };
                $crate::cases::$case(&store).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance!(@future async { $make });
    };
}

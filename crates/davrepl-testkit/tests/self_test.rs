//! The kit tests itself: each deliberately broken store must fail the cases meant to catch it,
//! and the correct store under the same wrapper-free setup must pass them.

use std::future::Future;

use davrepl_store::MemStore;
use davrepl_testkit::broken::{Broken, Fault};
use davrepl_testkit::cases;

/// Runs one case on a spawned task and reports whether it failed (panicked).
async fn fails<F, Fut>(case: F, store: Broken<MemStore>) -> bool
where
    F: FnOnce(Broken<MemStore>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    match tokio::spawn(async move { case(store).await }).await {
        Ok(()) => false,
        Err(e) => e.is_panic(),
    }
}

/// Silences the panic messages of the cases that are expected to fail (they run on runtime
/// workers); the test's own panics still print.
fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().map(str::to_owned);
            if !name.is_some_and(|n| n.starts_with("tokio-r")) {
                default(info);
            }
        }));
    });
}

macro_rules! caught_by {
    ($fault:expr, $runs:expr, $($case:ident),+ $(,)?) => {{
        quiet_expected_panics();
        for run in 0..$runs {
            $(
                let store = Broken::new(MemStore::new(), $fault);
                assert!(
                    fails(|s| async move { cases::$case(&s).await }, store).await,
                    "run {run}: case `{}` did not catch {:?}",
                    stringify!($case),
                    $fault
                );
            )+
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_then_write_blocking_is_caught_every_time() {
    caught_by!(
        Fault::CheckThenWriteBlocking,
        20,
        cas_race_single_winner,
        cas_race_no_lost_update
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_then_write_yielding_is_caught_every_time() {
    caught_by!(
        Fault::CheckThenWriteYielding,
        20,
        cas_race_single_winner,
        cas_race_no_lost_update
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ignored_conditions_are_caught() {
    caught_by!(
        Fault::IgnoresConditions,
        1,
        conditions_if_header,
        conditions_entity_tags,
        failed_condition_has_no_side_effect,
        cas_race_single_winner,
        cas_race_no_lost_update
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_order_log_is_caught() {
    caught_by!(Fault::OutOfOrderLog, 3, gap_free_feed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_member_tombstones_are_caught() {
    caught_by!(
        Fault::LosesMemberTombstones,
        1,
        delete_tree_leaves_tombstones
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn understated_capabilities_are_caught() {
    caught_by!(
        Fault::UnderstatesCapabilities,
        1,
        dead_properties,
        copy_depth_zero
    );
}

/// The wrapper itself is not what fails: with a fault that does not touch what a case
/// checks, the case passes. (Guards against a self-test that "catches" every store.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cases_pass_where_the_fault_does_not_reach() {
    let untouched = [
        (Fault::LosesMemberTombstones, "cas_race_single_winner"),
        (Fault::OutOfOrderLog, "conditions_if_header"),
        (Fault::UnderstatesCapabilities, "gap_free_feed"),
        (
            Fault::CheckThenWriteBlocking,
            "delete_tree_leaves_tombstones",
        ),
    ];
    for (fault, case) in untouched {
        let store = Broken::new(MemStore::new(), fault);
        let failed = match case {
            "cas_race_single_winner" => {
                fails(
                    |s| async move { cases::cas_race_single_winner(&s).await },
                    store,
                )
                .await
            }
            "conditions_if_header" => {
                fails(
                    |s| async move { cases::conditions_if_header(&s).await },
                    store,
                )
                .await
            }
            "gap_free_feed" => {
                fails(|s| async move { cases::gap_free_feed(&s).await }, store).await
            }
            _ => {
                fails(
                    |s| async move { cases::delete_tree_leaves_tombstones(&s).await },
                    store,
                )
                .await
            }
        };
        assert!(
            !failed,
            "{case} failed on a store whose fault ({fault:?}) it does not test"
        );
    }
}

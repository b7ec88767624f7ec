//! One store test suite, both backends: every case in `cases` runs against
//! SQLite (a temporary file) and PostgreSQL (a fresh database per test),
//! as `sqlite::<case>` and `postgres::<case>`.
//!
//! PostgreSQL is the server `REPRISE_TEST_DATABASE_URL` names, or else a
//! throwaway cluster this test binary starts from the installed server
//! binaries (see `harness`). A PostgreSQL test is never skipped: without a
//! server it fails and says why.

mod cases;
mod harness;

/// Instantiates each case once per backend.
macro_rules! for_each_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::harness::run(crate::harness::Backend::Sqlite, crate::cases::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::harness::run(crate::harness::Backend::Postgres, crate::cases::$case).await;
                }
            )*
        }
    };
}

/// Cases only one backend can pose.
mod postgres_only {
    #[tokio::test]
    async fn a_message_committed_after_a_higher_id_is_reported() {
        crate::harness::run(
            crate::harness::Backend::Postgres,
            crate::cases::a_message_committed_after_a_higher_id_is_reported,
        )
        .await;
    }
}

for_each_backend!(
    no_overwrite,
    one_bad_request_does_not_sink_its_batch,
    a_failed_insert_takes_its_whole_first_try_back,
    concurrent_appends_share_commits,
    mailbox_delivers_once,
    a_full_mailbox_refuses_signals_and_updates,
    tenants_see_only_their_own,
    running_limit_holds_for_concurrent_starts,
    reuse_policy_decides_what_a_finished_id_may_do,
    list_filters_cursor_pages_and_counts,
    terminate_fences_the_driver_and_only_once,
    payload_text_round_trips_byte_for_byte,
    history_pages,
    long_histories_read_whole_across_pages,
    span_watermarks_only_rise,
    guest_log_lines_are_capped_per_execution,
    modules_and_workflow_types,
    modules_are_limited_and_deleted,
    workflow_types_are_limited_and_deleted,
    finished_executions_are_swept_after_retention,
    the_count_cutoff_keeps_the_newest_finished_executions,
    writes_and_reads_survive_lost_connections,
    open_url_accepts_only_postgres,
    appends_go_only_to_executions_the_node_owns,
    a_dead_nodes_executions_are_claimed,
    one_node_leads_each_role,
    continue_as_new_swaps_runs_in_one_transaction,
    search_attributes_are_stored_filtered_and_carried_on,
    schedules_are_limited_versioned_and_scoped,
);

/// A node on PostgreSQL rides out a restart of the database: writes fail
/// while it is down, then go through on new connections, and the node
/// keeps its lease and its executions (it takes its session lock again).
#[tokio::test]
async fn a_node_rides_out_a_postgres_restart() {
    use std::time::Duration;

    use reprise_store::{Joined, PostgresStore, Store};

    let cluster = harness::PrivateCluster::start();
    let node = PostgresStore::connect(&cluster.url())
        .await
        .expect("connect");
    let lease = Duration::from_secs(2);
    assert_eq!(
        node.join_nodes("node", lease, None).await.expect("join"),
        Joined::Member
    );
    node.put_module("d", "workflow", b"bytes")
        .await
        .expect("module");
    let execution = cases::started_execution(&node).await;
    cluster.stop();
    assert!(
        node.append(execution, vec![cases::fired(2, 1)], None)
            .await
            .is_err(),
        "no write while the database is down"
    );
    cluster.start_again();
    node.append(execution, vec![cases::fired(2, 1)], None)
        .await
        .expect("a write once the database is back");
    assert!(
        node.renew_lease(lease).await.expect("renew"),
        "the lease held"
    );
    let other = PostgresStore::connect(&cluster.url())
        .await
        .expect("connect");
    assert_eq!(
        other.join_nodes("other", lease, None).await.expect("join"),
        Joined::Member
    );
    // Past half a lease without renewal, only a free session lock would
    // make the node dead: its lock is held again.
    tokio::time::sleep(lease / 2 + Duration::from_millis(300)).await;
    assert!(
        other.claim_orphans(10).await.expect("claim").is_empty(),
        "a live node's executions stay with it after a restart"
    );
}

//! Two local folders and one real server: every round of changes must end with both folders
//! and the server holding identical trees (compared by hash), and no edit lost.

mod common;

use common::*;
use davrepl_client::Condition;

/// Files of every kind: nested, empty, binary, Unicode names.
fn seed(a: &std::path::Path) {
    write(a, "notes.txt", "first notes\n");
    write(a, "empty.bin", b"");
    write(a, "deep/er/still/leaf.md", "# leaf\n");
    write(a, "Grüße/日本語 ファイル.txt", "unicode\n");
    write(a, "space name & more #1%.txt", "odd characters\n");
    let binary: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
    write(a, "data/blob.bin", binary);
    std::fs::create_dir_all(a.join("empty-folder/inner")).expect("mkdir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_both_ways_then_a_no_change_sync_does_nothing() {
    let w = World::start().await;
    let (a, b) = (w.folder("a"), w.folder("b"));
    seed(&a);
    let up = w.sync(&a).await;
    assert_eq!(up.uploaded, 6, "{up:?}");
    let down = w.sync(&b).await;
    assert_eq!(down.downloaded, 6, "{down:?}");
    let t = assert_converged(&w, &a, &b).await;
    assert!(t.contains_key("empty-folder/inner"));
    for dir in [&a, &b] {
        let again = w.sync(dir).await;
        assert_eq!(
            (again.uploaded, again.downloaded, again.deleted, again.moved),
            (0, 0, 0, 0),
            "{again:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_change_on_both_sides_converges() {
    let w = World::start().await;
    let (a, b) = (w.folder("a"), w.folder("b"));
    for i in 0..8 {
        write(&a, &format!("f{i}.txt"), format!("version 1 of {i}\n"));
    }
    write(&a, "dir/inside.txt", "inside\n");
    w.sync(&a).await;
    w.sync(&b).await;
    let rid_f2 = w.rid("f2.txt").await;
    let rid_f6 = w.rid("f6.txt").await;

    // A: create, edit, delete, rename.
    write(&a, "new-a.txt", "from a\n");
    write(&a, "f0.txt", "edited on a\n");
    std::fs::remove_file(a.join("f1.txt")).expect("rm");
    std::fs::rename(a.join("f2.txt"), a.join("renamed-on-a.txt")).expect("mv");
    // B: create, edit, delete, rename (other files), plus a new folder.
    write(&b, "sub/new-b.txt", "from b\n");
    write(&b, "f4.txt", "edited on b\n");
    std::fs::remove_file(b.join("f5.txt")).expect("rm");
    std::fs::rename(b.join("f6.txt"), b.join("dir/renamed-on-b.txt")).expect("mv");

    w.sync(&a).await;
    let sb = w.sync(&b).await;
    // A's rename reached B as a rename, not a download.
    assert!(sb.moved >= 2, "{sb:?}");
    w.sync(&a).await;
    let t = assert_converged(&w, &a, &b).await;
    assert_eq!(read(&b, "f0.txt"), "edited on a\n");
    assert_eq!(read(&a, "f4.txt"), "edited on b\n");
    assert_eq!(read(&a, "sub/new-b.txt"), "from b\n");
    assert!(!t.contains_key("f1.txt") && !t.contains_key("f5.txt"));
    assert!(!t.contains_key("f2.txt") && !t.contains_key("f6.txt"));
    // Renames were MOVEs: the resources kept their repl-uids.
    assert_eq!(w.rid("renamed-on-a.txt").await, rid_f2);
    assert_eq!(w.rid("dir/renamed-on-b.txt").await, rid_f6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_edit_keeps_both_versions_everywhere() {
    let w = World::start().await;
    let (a, b) = (w.folder("a"), w.folder("b"));
    write(&a, "doc.txt", "original\n");
    w.sync(&a).await;
    w.sync(&b).await;
    write(&a, "doc.txt", "edit from a\n");
    write(&b, "doc.txt", "edit from b, longer\n");
    w.sync(&a).await;
    let sb = w.sync(&b).await;
    assert_eq!(sb.conflicts, 1, "{sb:?}");
    w.sync(&a).await;
    let t = assert_converged(&w, &a, &b).await;
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(read(&a, "doc.txt"), "edit from a\n");
    let copy = t
        .keys()
        .find(|k| k.starts_with("doc (conflict ") && k.ends_with(").txt"))
        .expect("a conflict copy");
    assert_eq!(read(&a, copy), "edit from b, longer\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_never_wins_over_an_edit() {
    let w = World::start().await;
    let (a, b) = (w.folder("a"), w.folder("b"));
    write(&a, "keep-remote.txt", "v1\n");
    write(&a, "keep-local.txt", "v1\n");
    w.sync(&a).await;
    w.sync(&b).await;
    // Local delete + remote edit: the remote version comes back.
    std::fs::remove_file(a.join("keep-remote.txt")).expect("rm");
    write(&b, "keep-remote.txt", "v2 from b\n");
    // Remote delete + local edit: the local file is uploaded again.
    std::fs::remove_file(b.join("keep-local.txt")).expect("rm");
    write(&a, "keep-local.txt", "v2 from a\n");
    w.sync(&b).await;
    w.sync(&a).await;
    w.sync(&b).await;
    assert_converged(&w, &a, &b).await;
    assert_eq!(read(&a, "keep-remote.txt"), "v2 from b\n");
    assert_eq!(read(&b, "keep-local.txt"), "v2 from a\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_racing_a_server_edit_is_a_conflict_not_an_overwrite() {
    let w = World::start().await;
    let a = w.folder("a");
    write(&a, "race.txt", "v1\n");
    w.sync(&a).await;
    write(&a, "race.txt", "local v2\n");
    // The server changes between A's manifest and A's upload: the edit is made, and A's saved
    // collblob is moved past it (as if A's manifest had been read just before), so only the
    // conditional PUT can notice — and gets 412.
    let c = w.client();
    let tag = c.propfind("race.txt", false).await.expect("propfind")[0]
        .tag
        .clone()
        .expect("tag");
    c.put("race.txt", "server v2\n", Condition::Tag(tag))
        .await
        .expect("server edit");
    let j = davrepl_cli::journal::Journal::open(&a.join(".davrepl/journal.db")).expect("journal");
    let blob = j.meta("collblob").expect("meta");
    let page = c.manifest_all(blob.as_deref()).await.expect("manifest");
    assert_eq!(page.rows.len(), 1);
    j.set_meta("collblob", Some(&page.collblob)).expect("set");
    drop(j);
    let s = w.sync(&a).await;
    assert_eq!(s.conflicts, 1, "{s:?}");
    let t = tree(&a);
    assert_eq!(read(&a, "race.txt"), "server v2\n");
    let copy = t.keys().find(|k| k.contains("(conflict ")).expect("copy");
    assert_eq!(read(&a, copy), "local v2\n");
    assert_eq!(w.server_tree().await, t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_renames_and_deletes_travel_both_ways() {
    let w = World::start().await;
    let (a, b) = (w.folder("a"), w.folder("b"));
    write(&a, "proj/src/main.rs", "fn main() {}\n");
    write(&a, "proj/README", "readme\n");
    write(&a, "old/x.txt", "x\n");
    w.sync(&a).await;
    w.sync(&b).await;
    let rid = w.rid("proj/src/main.rs").await;
    std::fs::rename(a.join("proj"), a.join("project")).expect("mv dir");
    std::fs::remove_dir_all(b.join("old")).expect("rm dir");
    w.sync(&a).await;
    let sb = w.sync(&b).await;
    assert_eq!(sb.downloaded, 0, "a rename is not a download: {sb:?}");
    w.sync(&a).await;
    let t = assert_converged(&w, &a, &b).await;
    assert!(t.contains_key("project/src/main.rs"), "{t:?}");
    assert!(
        !t.keys()
            .any(|k| k.starts_with("proj/") || k.starts_with("old")),
        "{t:?}"
    );
    assert_eq!(w.rid("project/src/main.rs").await, rid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_collblob_resyncs_by_hash_and_downloads_nothing_equal() {
    let w = World::start().await;
    let (a, b) = (w.folder("a"), w.folder("b"));
    for i in 0..20 {
        write(&a, &format!("n/{i}.txt"), format!("{i}\n"));
    }
    w.sync(&a).await;
    w.sync(&b).await;
    // A garbled collblob is answered 475: full comparison, nothing re-downloaded.
    let j = davrepl_cli::journal::Journal::open(&b.join(".davrepl/journal.db")).expect("journal");
    j.set_meta("collblob", Some("garbage-not-a-collblob"))
        .expect("set");
    drop(j);
    write(&a, "n/new.txt", "new\n");
    w.sync(&a).await;
    let s = w.sync(&b).await;
    assert_eq!(s.downloaded, 1, "only the new file: {s:?}");
    assert_converged(&w, &a, &b).await;
    // A fresh folder holding copies of the files already: adopted, nothing downloaded.
    let c = w.folder("c");
    for i in 0..20 {
        write(&c, &format!("n/{i}.txt"), format!("{i}\n"));
    }
    let sc = w.sync(&c).await;
    assert_eq!(
        (sc.downloaded, sc.uploaded, sc.conflicts),
        (1, 0, 0),
        "{sc:?}"
    );
    assert_eq!(tree(&c), w.server_tree().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_file_goes_up_and_down_intact() {
    let w = World::start().await;
    let (a, b) = (w.folder("a"), w.folder("b"));
    let big: Vec<u8> = (0..50u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&a, "big/video.bin", &big);
    w.sync(&a).await;
    let s = w.sync(&b).await;
    assert_eq!(s.bytes_down, 50 << 20, "{s:?}");
    assert_converged(&w, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_special_files_and_odd_names_are_skipped_with_a_warning() {
    let w = World::start().await;
    let a = w.folder("a");
    write(&a, "real.txt", "real\n");
    std::os::unix::fs::symlink(a.join("real.txt"), a.join("link.txt")).expect("symlink");
    let fifo = a.join("pipe");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    write(&a, "bad\u{1}name.txt", "control character\n");
    let s = w.sync(&a).await;
    assert_eq!(s.uploaded, 1, "{s:?}");
    let expected = if ok { 3 } else { 2 };
    assert_eq!(s.warnings.len(), expected, "{:?}", s.warnings);
    assert!(s.warnings.iter().any(|m| m.contains("symbolic link")));
    let t = w.server_tree().await;
    assert_eq!(t.keys().collect::<Vec<_>>(), vec!["real.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_changes_nothing() {
    let w = World::start().await;
    let a = w.folder("a");
    write(&a, "x.txt", "x\n");
    let syncer = davrepl_cli::Syncer::open(&davrepl_cli::Options {
        dir: a.clone(),
        url: w.url(),
        credentials: None,
        dry_run: true,
        quiet: true,
        concurrency: 1,
    })
    .expect("open");
    let s = syncer.sync_once().await.expect("dry run");
    assert_eq!(s.planned, vec!["upload new x.txt".to_owned()]);
    assert!(w.server_tree().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_the_journal_forgot_is_found_on_the_server_not_refused() {
    let w = World::start().await;
    let a = w.folder("a");
    write(&a, "x/y/a.txt", "v1\n");
    w.sync(&a).await;
    // The journal loses its folder rows (as after a crash between MKCOL and its record): the
    // next upload's MKCOL meets existing folders, answered 409 by this server (spec A19).
    let j = davrepl_cli::journal::Journal::open(&a.join(".davrepl/journal.db")).expect("journal");
    j.remove("x").expect("forget");
    j.remove("x/y").expect("forget");
    drop(j);
    write(&a, "x/y/a.txt", "v2, longer\n");
    let s = w.sync(&a).await;
    assert_eq!(s.uploaded, 1, "{s:?}");
    assert_eq!(w.server_tree().await, tree(&a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clashing_changes_to_the_same_item_lose_nothing() {
    let w = World::start().await;
    let (a, b) = (w.folder("a"), w.folder("b"));
    write(&a, "r.txt", "renamed twice\n");
    write(&a, "e.txt", "edited here, renamed there\n");
    write(&a, "d.txt", "deleted on both sides\n");
    w.sync(&a).await;
    w.sync(&b).await;
    // Both create the same new path with different content.
    write(&a, "same.txt", "created on a\n");
    write(&b, "same.txt", "created on b\n");
    // Both rename one file, to different names.
    std::fs::rename(a.join("r.txt"), a.join("r-a.txt")).expect("mv");
    std::fs::rename(b.join("r.txt"), b.join("r-b.txt")).expect("mv");
    // One side edits what the other renames.
    write(&a, "e.txt", "the edit\n");
    std::fs::rename(b.join("e.txt"), b.join("e-renamed.txt")).expect("mv");
    // Both delete the same file.
    std::fs::remove_file(a.join("d.txt")).expect("rm");
    std::fs::remove_file(b.join("d.txt")).expect("rm");
    w.sync(&a).await;
    w.sync(&b).await;
    w.sync(&a).await;
    let t = assert_converged(&w, &a, &b).await;
    let contents: Vec<String> = t
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| read(&a, k))
        .collect();
    for wanted in [
        "created on a\n",
        "created on b\n",
        "renamed twice\n",
        "the edit\n",
        "edited here, renamed there\n",
    ] {
        assert!(
            contents.iter().any(|c| c == wanted),
            "{wanted:?} lost: {t:?}"
        );
    }
    assert!(!t.contains_key("d.txt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_items_named_like_the_journal_folder_never_reach_it() {
    let w = World::start().await;
    let c = w.client();
    c.mkcol(".davrepl").await.expect("mkcol");
    c.put(".davrepl/journal.db", "not a database", Condition::Absent)
        .await
        .expect("put");
    c.put("fine.txt", "fine\n", Condition::Absent)
        .await
        .expect("put");
    let b = w.folder("b");
    let s = w.sync(&b).await;
    assert_eq!(s.downloaded, 1, "{s:?}");
    assert!(
        s.warnings.iter().any(|m| m.contains(".davrepl")),
        "{:?}",
        s.warnings
    );
    // The journal is still a journal: a second sync works and finds nothing to do.
    let again = w.sync(&b).await;
    assert_eq!(again.downloaded, 0, "{again:?}");
    assert_eq!(read(&b, "fine.txt"), "fine\n");
}

//! Deciding what a sync does: the manifest's rows, the local walk and the journal in, a list of
//! [`Action`]s out. Nothing here touches the network; reading local files to hash them is the
//! only I/O.
//!
//! The journal is the common ancestor. For each resource the journal knows, the server side is
//! *unchanged*, *changed* (new tag and/or new path, same repl-uid) or *gone*; the local side is
//! *unchanged*, *modified*, *missing* or *renamed* (a new local file with the same inode or the
//! same content). Every pair has one answer, chosen so that no edit is ever lost: when both
//! sides changed the content, the local version is kept under a `(conflict …)` name and
//! uploaded too.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use davrepl_client::{Condition, Item, Row};

use crate::journal::{Entry, Stat};
use crate::scan::{Local, STATE_DIR, hash_file, name_ok};

/// One step of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Both sides agree already; only the journal learns it.
    Record(Entry),
    /// Both sides dropped it; the journal forgets it.
    Forget(String),
    /// Upload a local file.
    Upload {
        /// Its path.
        path: String,
        /// `Tag` to replace the version the journal knows, `Absent` for a new one.
        cond: Condition,
        /// Its hash when planned.
        sha: String,
        /// Its stat when planned (it is not uploaded if this changed meanwhile).
        stat: Stat,
    },
    /// Download a server item to its path.
    Download {
        /// The item as the manifest described it.
        item: Item,
        /// The local file at the path must still have this stat (`None`: must not exist).
        expect: Option<Stat>,
    },
    /// The server moved an item the folder holds unchanged: rename it locally.
    RenameLocal {
        /// The journal's record of it.
        entry: Entry,
        /// Its new state on the server.
        item: Item,
    },
    /// The folder renamed an item: MOVE it on the server (keeps its repl-uid).
    MoveRemote {
        /// The journal's record of it (old path).
        entry: Entry,
        /// The new local path.
        to: String,
        /// The local file's hash now (it may have been edited too).
        sha: String,
        /// Its stat.
        stat: Stat,
    },
    /// The server deleted an item the folder holds unchanged.
    DeleteLocal(Entry),
    /// The folder deleted an item the server holds unchanged.
    DeleteRemote(Entry),
    /// Both sides changed a file differently: keep the local one under a conflict name (and
    /// upload it), and put the server's version at its path.
    Conflict {
        /// The local file.
        path: String,
        /// Its stat when planned.
        stat: Stat,
        /// The server's version.
        item: Item,
    },
    /// Create a folder the server has.
    MkdirLocal(Item),
    /// Create on the server a folder the folder has.
    MkcolRemote(String),
    /// The server removed (or moved away) a folder: remove it locally once empty.
    RmdirLocal(Entry),
    /// The folder removed a folder: remove it on the server if nothing is left in it.
    RmdirRemote(Entry),
}

impl Action {
    /// Whether it only writes the journal.
    pub fn journal_only(&self) -> bool {
        matches!(self, Action::Record(_) | Action::Forget(_))
    }

    /// A short description for dry runs and logs.
    pub fn describe(&self) -> String {
        match self {
            Action::Record(e) => format!("record {}", e.path),
            Action::Forget(p) => format!("forget {p}"),
            Action::Upload { path, cond, .. } => match cond {
                Condition::Absent => format!("upload new {path}"),
                _ => format!("upload {path}"),
            },
            Action::Download { item, .. } => format!("download {}", item.path),
            Action::RenameLocal { entry, item } => {
                format!("rename local {} → {}", entry.path, item.path)
            }
            Action::MoveRemote { entry, to, .. } => format!("move {} → {to}", entry.path),
            Action::DeleteLocal(e) => format!("delete local {}", e.path),
            Action::DeleteRemote(e) => format!("delete {}", e.path),
            Action::Conflict { path, .. } => format!("conflict {path}"),
            Action::MkdirLocal(i) => format!("mkdir local {}/", i.path),
            Action::MkcolRemote(p) => format!("mkcol {p}/"),
            Action::RmdirLocal(e) => format!("rmdir local {}/", e.path),
            Action::RmdirRemote(e) => format!("rmdir {}/", e.path),
        }
    }
}

/// The server's side of one resource after folding its manifest rows.
#[derive(Debug, Clone)]
enum Remote {
    Present(Item),
    Gone,
}

/// The local side of one journal entry.
enum LocalState {
    Unchanged(Stat),
    Modified(String, Stat),
    Missing,
    Renamed(String, String, Stat),
}

/// What the plan needs as input.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The synced folder.
    pub root: &'a Path,
    /// The manifest rows, in order.
    pub rows: Vec<Row>,
    /// Whether the rows list everything the server has (first sync or after `475`).
    pub full: bool,
    /// The local walk.
    pub local: HashMap<String, Local>,
    /// The journal.
    pub journal: HashMap<String, Entry>,
}

/// The plan and what was skipped.
#[derive(Debug, Default)]
pub struct Plan {
    /// Actions, in no particular order (the executor phases them).
    pub actions: Vec<Action>,
    /// Warnings (names that cannot be synced, unreadable files).
    pub warnings: Vec<String>,
    /// Server items left for the next pass (their path is still taken locally).
    pub deferred: usize,
}

impl Plan {
    /// Whether nothing but journal bookkeeping is left to do.
    pub fn quiet(&self) -> bool {
        self.deferred == 0 && self.actions.iter().all(Action::journal_only)
    }
}

/// Whether a server path can be a local one: every segment a possible file name, and not
/// inside the journal's folder (a server item there would overwrite the journal).
fn path_ok(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(name_ok) && path.split('/').next() != Some(STATE_DIR)
}

/// Computes the plan (hashing local files whose stat changed).
pub fn plan(input: Inputs<'_>) -> Plan {
    let Inputs {
        root,
        rows,
        full,
        local,
        journal,
    } = input;
    let mut out = Plan::default();

    // The server's final state per repl-uid.
    let mut remote: HashMap<String, Remote> = HashMap::new();
    for row in rows {
        match row {
            Row::Change(item) => {
                let Some(rid) = item.rid.clone() else {
                    continue;
                };
                if !path_ok(&item.path) {
                    out.warnings.push(format!(
                        "skipped server item {:?}: its name cannot be synced",
                        item.path
                    ));
                    continue;
                }
                remote.insert(rid, Remote::Present(item));
            }
            Row::Delete { rid, .. } => {
                remote.insert(rid, Remote::Gone);
            }
            _ => {}
        }
    }
    if full {
        for e in journal.values() {
            if let Some(rid) = &e.rid {
                remote.entry(rid.clone()).or_insert(Remote::Gone);
            }
        }
    }
    let known_rids: HashSet<&str> = journal.values().filter_map(|e| e.rid.as_deref()).collect();

    // Local files the journal does not know, hashed (rename detection and uploads need it).
    let mut fresh: HashMap<String, (String, Stat)> = HashMap::new();
    let mut fresh_dirs: Vec<String> = Vec::new();
    for (path, l) in &local {
        if journal.contains_key(path) {
            continue;
        }
        if l.is_dir {
            fresh_dirs.push(path.clone());
            continue;
        }
        match hash_file(&root.join(path)) {
            Ok(h) => {
                fresh.insert(path.clone(), h);
            }
            Err(e) => out.warnings.push(format!("skipped {path}: {e}")),
        }
    }
    let mut fresh_by_ino: HashMap<u64, String> = HashMap::new();
    let mut fresh_by_sha: HashMap<String, String> = HashMap::new();
    let mut fresh_sorted: Vec<&String> = fresh.keys().collect();
    fresh_sorted.sort();
    for p in fresh_sorted {
        let (sha, stat) = &fresh[p];
        fresh_by_ino.entry(stat.ino).or_insert_with(|| p.clone());
        fresh_by_sha.entry(sha.clone()).or_insert_with(|| p.clone());
    }
    let mut claimed: HashSet<String> = HashSet::new();

    let mut entries: Vec<&Entry> = journal.values().collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    // Local deletes planned, by path (a new server file landing there replaces the delete).
    let mut local_deletes: HashMap<String, Entry> = HashMap::new();
    for j in entries {
        let r = j.rid.as_ref().and_then(|rid| remote.get(rid)).cloned();
        if j.is_dir {
            plan_dir(j, r, local.get(&j.path), &mut out);
            continue;
        }
        let state = local_state(
            root,
            j,
            &local,
            &fresh,
            &fresh_by_ino,
            &fresh_by_sha,
            &mut claimed,
            &mut out,
        );
        // The server side: `None` unchanged.
        let r = match r {
            Some(Remote::Present(item))
                if item.path == j.path && (item.tag == j.tag || item.sha256 == j.sha256) =>
            {
                if item.tag != j.tag {
                    out.actions.push(Action::Record(Entry {
                        tag: item.tag.clone(),
                        ..j.clone()
                    }));
                }
                None
            }
            other => other,
        };
        match (r, state) {
            (None, LocalState::Unchanged(stat)) => {
                if stat != j.stat {
                    out.actions
                        .push(Action::Record(Entry { stat, ..j.clone() }));
                }
            }
            (None, LocalState::Modified(sha, stat)) => out.actions.push(Action::Upload {
                path: j.path.clone(),
                cond: tag_cond(j),
                sha,
                stat,
            }),
            (None, LocalState::Missing) => out.actions.push(Action::DeleteRemote(j.clone())),
            (None, LocalState::Renamed(to, sha, stat)) => out.actions.push(Action::MoveRemote {
                entry: j.clone(),
                to,
                sha,
                stat,
            }),
            (Some(Remote::Present(item)), LocalState::Unchanged(stat)) => {
                if item.path != j.path {
                    out.actions.push(Action::RenameLocal {
                        entry: Entry { stat, ..j.clone() },
                        item,
                    });
                } else {
                    out.actions.push(Action::Download {
                        item,
                        expect: Some(stat),
                    });
                }
            }
            (Some(Remote::Present(item)), LocalState::Modified(sha, stat)) => {
                if item.sha256.as_deref() == Some(sha.as_str()) && item.path == j.path {
                    out.actions.push(Action::Record(Entry {
                        tag: item.tag.clone(),
                        rid: item.rid.clone(),
                        stat,
                        sha256: Some(sha),
                        ..j.clone()
                    }));
                } else {
                    out.actions.push(Action::Conflict {
                        path: j.path.clone(),
                        stat,
                        item,
                    });
                }
            }
            (Some(Remote::Present(item)), LocalState::Missing) => {
                let expect = local.get(&item.path).map(|l| l.stat);
                out.actions.push(Action::Download { item, expect });
            }
            (Some(Remote::Present(item)), LocalState::Renamed(to, sha, stat)) => {
                // Renamed here, changed there: the renamed file goes up as a new one and the
                // server's version comes down where the server has it.
                out.actions.push(Action::Forget(j.path.clone()));
                if item.path == to && item.sha256.as_deref() == Some(sha.as_str()) {
                    out.actions.push(Action::Record(entry_of(&item, stat, sha)));
                    continue;
                }
                out.actions.push(Action::Upload {
                    path: to.clone(),
                    cond: Condition::Absent,
                    sha,
                    stat,
                });
                if item.path != to {
                    let expect = local.get(&item.path).map(|l| l.stat);
                    out.actions.push(Action::Download { item, expect });
                }
            }
            (Some(Remote::Gone), LocalState::Unchanged(_)) => {
                local_deletes.insert(j.path.clone(), j.clone());
            }
            (Some(Remote::Gone), LocalState::Modified(sha, stat)) => {
                out.actions.push(Action::Forget(j.path.clone()));
                out.actions.push(Action::Upload {
                    path: j.path.clone(),
                    cond: Condition::Absent,
                    sha,
                    stat,
                });
            }
            (Some(Remote::Gone), LocalState::Missing) => {
                out.actions.push(Action::Forget(j.path.clone()));
            }
            (Some(Remote::Gone), LocalState::Renamed(to, sha, stat)) => {
                out.actions.push(Action::Forget(j.path.clone()));
                out.actions.push(Action::Upload {
                    path: to,
                    cond: Condition::Absent,
                    sha,
                    stat,
                });
            }
        }
    }

    // Server items the journal does not know.
    let mut news: Vec<Item> = remote
        .iter()
        .filter(|(rid, _)| !known_rids.contains(rid.as_str()))
        .filter_map(|(_, r)| match r {
            Remote::Present(i) => Some(i.clone()),
            Remote::Gone => None,
        })
        .collect();
    news.sort_by(|a, b| a.path.cmp(&b.path));
    let mut remote_paths: HashSet<String> = HashSet::new();
    for item in news {
        remote_paths.insert(item.path.clone());
        let here = local.get(&item.path);
        if item.is_collection {
            match here {
                Some(l) if l.is_dir => out.actions.push(Action::Record(dir_entry(&item))),
                Some(_) => out.warnings.push(format!(
                    "skipped {}: a folder on the server, a file here",
                    item.path
                )),
                None => out.actions.push(Action::MkdirLocal(item)),
            }
            continue;
        }
        if let Some(stat) = here.filter(|l| !l.is_dir).map(|l| l.stat) {
            if let Some((sha, fstat)) = fresh
                .get(&item.path)
                .filter(|_| !claimed.contains(&item.path))
            {
                claimed.insert(item.path.clone());
                if item.sha256.as_deref() == Some(sha.as_str()) {
                    out.actions
                        .push(Action::Record(entry_of(&item, *fstat, sha.clone())));
                } else {
                    out.actions.push(Action::Conflict {
                        path: item.path.clone(),
                        stat: *fstat,
                        item,
                    });
                }
                continue;
            }
            // A journal file the server deleted sits there unchanged: replace it.
            if local_deletes.remove(&item.path).is_some() {
                out.actions.push(Action::Download {
                    item,
                    expect: Some(stat),
                });
                continue;
            }
            // Another synced file still sits there (moving away in this same pass): the next
            // pass downloads it, once the path is free.
            out.deferred += 1;
            continue;
        }
        if here.is_some() {
            out.warnings.push(format!(
                "skipped {}: a file on the server, a folder here",
                item.path
            ));
            continue;
        }
        out.actions.push(Action::Download { item, expect: None });
    }
    out.actions
        .extend(local_deletes.into_values().map(Action::DeleteLocal));

    // Local files and folders the journal does not know and no rename claimed.
    fresh_dirs.sort();
    for d in fresh_dirs {
        if !remote_paths.contains(&d) {
            out.actions.push(Action::MkcolRemote(d));
        }
    }
    let mut rest: Vec<(&String, &(String, Stat))> = fresh
        .iter()
        .filter(|(p, _)| !claimed.contains(*p))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (path, (sha, stat)) in rest {
        out.actions.push(Action::Upload {
            path: path.clone(),
            cond: Condition::Absent,
            sha: sha.clone(),
            stat: *stat,
        });
    }
    out
}

fn tag_cond(j: &Entry) -> Condition {
    cond_for(j.tag.as_ref())
}

/// The condition that replaces exactly the version with this resourcetag (unconditional when
/// the tag is unknown).
pub fn cond_for(tag: Option<&String>) -> Condition {
    match tag {
        Some(t) => Condition::Tag(t.clone()),
        None => Condition::None,
    }
}

/// The journal entry for a server file both sides now hold.
pub fn entry_of(item: &Item, stat: Stat, sha: String) -> Entry {
    Entry {
        path: item.path.clone(),
        is_dir: false,
        rid: item.rid.clone(),
        tag: item.tag.clone(),
        stat,
        sha256: Some(sha),
    }
}

/// The journal entry for a server folder both sides now hold.
pub fn dir_entry(item: &Item) -> Entry {
    Entry {
        path: item.path.clone(),
        is_dir: true,
        rid: item.rid.clone(),
        tag: item.tag.clone(),
        ..Entry::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn local_state(
    root: &Path,
    j: &Entry,
    local: &HashMap<String, Local>,
    fresh: &HashMap<String, (String, Stat)>,
    by_ino: &HashMap<u64, String>,
    by_sha: &HashMap<String, String>,
    claimed: &mut HashSet<String>,
    out: &mut Plan,
) -> LocalState {
    match local.get(&j.path) {
        Some(l) if !l.is_dir => {
            if l.stat == j.stat {
                return LocalState::Unchanged(l.stat);
            }
            match hash_file(&root.join(&j.path)) {
                Ok((sha, stat)) if Some(&sha) == j.sha256.as_ref() => LocalState::Unchanged(stat),
                Ok((sha, stat)) => LocalState::Modified(sha, stat),
                Err(e) => {
                    out.warnings.push(format!("skipped {}: {e}", j.path));
                    LocalState::Unchanged(j.stat)
                }
            }
        }
        _ => {
            // Missing: renamed if a new file has its inode (and size) or its content.
            let by_inode = by_ino
                .get(&j.stat.ino)
                .filter(|p| !claimed.contains(*p) && fresh[*p].1.size == j.stat.size);
            let by_content = || {
                j.sha256
                    .as_ref()
                    .and_then(|s| by_sha.get(s))
                    .filter(|p| !claimed.contains(*p))
            };
            match by_inode.or_else(by_content) {
                Some(p) => {
                    let p = p.clone();
                    claimed.insert(p.clone());
                    let (sha, stat) = fresh[&p].clone();
                    LocalState::Renamed(p, sha, stat)
                }
                None => LocalState::Missing,
            }
        }
    }
}

fn plan_dir(j: &Entry, r: Option<Remote>, here: Option<&Local>, out: &mut Plan) {
    let present = here.is_some_and(|l| l.is_dir);
    match (r, present) {
        (None, true) => {}
        (None, false) => out.actions.push(Action::RmdirRemote(j.clone())),
        (Some(Remote::Present(item)), true) if item.path == j.path => {
            if item.tag != j.tag {
                out.actions.push(Action::Record(dir_entry(&item)));
            }
        }
        (Some(Remote::Present(item)), true) => {
            out.actions.push(Action::RmdirLocal(j.clone()));
            out.actions.push(Action::MkdirLocal(item));
        }
        (Some(Remote::Present(item)), false) => out.actions.push(Action::MkdirLocal(item)),
        (Some(Remote::Gone), true) => out.actions.push(Action::RmdirLocal(j.clone())),
        (Some(Remote::Gone), false) => out.actions.push(Action::Forget(j.path.clone())),
    }
}

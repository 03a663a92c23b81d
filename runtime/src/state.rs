//! The local state store: one SQLite database (`<root>/state.db`, through rusqlite) with a
//! row per container: what it runs, its id range, its status, exit code and metering.
//!
//! There is no daemon: every farm process opens the store, does its work in short
//! transactions and leaves. Names and id ranges are UNIQUE columns, so two concurrent
//! `farm run` can never get the same name or overlapping ids.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::cgroups::Usage;
use crate::options::RunOptions;
use crate::sandbox::userns::IdRange;

mod restarts;
pub use restarts::Restarts;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("state store {path}: {source}")]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store: container {id}: bad record: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("the name {name:?} is already in use by container {id}: remove it (`farm rm {name}`) or choose another name")]
    NameInUse { name: String, id: String },
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("{prefix:?} matches several containers ({ids}): give more of the id")]
    Ambiguous { prefix: String, ids: String },
    #[error("{0}")]
    GpuBusy(String),
    #[error("no free user-namespace range: all {slots} ranges of 65,536 ids in /etc/subuid are taken by containers; remove some (`farm ps -a`, `farm rm`) or give user `farm` a larger range")]
    RangesExhausted { slots: u32 },
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The record exists; the monitor is setting the container up.
    Created,
    Running,
    /// Exited, and its monitor waits out the back-off of the restart policy.
    Restarting,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        }
    }

    fn parse(text: &str) -> Option<Status> {
        match text {
            "created" => Some(Status::Created),
            "running" => Some(Status::Running),
            "restarting" => Some(Status::Restarting),
            "exited" => Some(Status::Exited),
            _ => None,
        }
    }
}

/// The image a container runs, as the puller stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRef {
    /// docker's IMAGE ID (the config digest).
    pub id: String,
    /// The name it was asked for (`busybox`, `oci:/x:tag`).
    pub name: String,
    /// Snapshot chain IDs, bottom layer first: these snapshots must outlive the container.
    pub chain_ids: Vec<String>,
    /// The snapshot folders (`.../snapshots/<chain>/fs`), bottom layer first.
    pub layers: Vec<PathBuf>,
    /// The image config JSON (hostile input: parsed by `spec`).
    pub config: serde_json::Value,
}

impl ImageRef {
    /// The image config's `Env` (hostile input: only strings are taken).
    pub fn env(&self) -> Vec<String> {
        self.config["config"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// How a container ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exit {
    pub code: i32,
    pub oom_killed: bool,
    /// Why farm ended it or could not start it (timeout, lost monitor, setup error).
    pub error: Option<String>,
    pub usage: Usage,
    pub wall_seconds: f64,
    /// GPU-seconds and energy per leased GPU (the base of GPU earnings).
    #[serde(default)]
    pub gpus: Vec<GpuUsage>,
    /// Bytes and packets in and out (`--network internet` only).
    #[serde(default)]
    pub network: Option<crate::network::NetUsage>,
}

/// What a container used of one GPU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuUsage {
    /// The lease id (the GPU's UUID).
    pub id: String,
    /// Seconds the GPU was held by the container.
    pub seconds: f64,
    /// Energy the GPU used meanwhile, from NVML's counter, where the GPU has one.
    pub energy_joules: Option<f64>,
}

/// One row of the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// RFC 3339.
    pub created: String,
    pub image: ImageRef,
    pub options: RunOptions,
    pub ids: IdRange,
    pub status: Status,
    /// The container's init process, as the host sees it.
    pub pid: Option<i32>,
    pub monitor_pid: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit: Option<Exit>,
}

/// The GPUs a new container asks for, by the ids the GPU module gives them (UUIDs).
/// Leases are taken in the insert's transaction: a GPU leased exclusively to a container
/// that is not exited is given to no other, and a GPU leased shared to one is given only to
/// others that share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuClaim {
    /// The candidates, in the order to prefer them.
    pub candidates: Vec<String>,
    /// `Some(n)`: any `n` free candidates (`--gpus N`); `None`: every candidate.
    pub count: Option<usize>,
    /// `--gpu-share`: share with other sharing containers.
    pub shared: bool,
}

/// The state store of one farm root.
pub struct StateStore {
    path: PathBuf,
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created     TEXT NOT NULL,
    image       TEXT NOT NULL,
    options     TEXT NOT NULL,
    uid_base    INTEGER NOT NULL UNIQUE,
    gid_base    INTEGER NOT NULL UNIQUE,
    id_count    INTEGER NOT NULL,
    status      TEXT NOT NULL,
    pid         INTEGER,
    monitor_pid INTEGER,
    started_at  TEXT,
    finished_at TEXT,
    exit        TEXT
);
CREATE TABLE IF NOT EXISTS restarts (
    container_id   TEXT PRIMARY KEY,
    count          INTEGER NOT NULL DEFAULT 0,
    delay_ms       INTEGER NOT NULL DEFAULT 0,
    stop_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS gpu_leases (
    container_id TEXT NOT NULL,
    gpu          TEXT NOT NULL,
    position     INTEGER NOT NULL,
    shared       INTEGER NOT NULL,
    PRIMARY KEY (container_id, gpu)
);
";

const COLUMNS: &str = "id, name, created, image, options, uid_base, gid_base, id_count, status, pid, monitor_pid, started_at, finished_at, exit";

impl StateStore {
    /// Open (and create) `<root>/state.db`.
    pub fn open(root: &Path) -> Result<StateStore, StateError> {
        let path = root.join("state.db");
        let sql = |source| StateError::Sql {
            path: path.clone(),
            source,
        };
        if !root.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(root)
                .map_err(|e| sql(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        }
        let db = Connection::open(&path).map_err(sql)?;
        db.busy_timeout(Duration::from_secs(30)).map_err(sql)?;
        db.execute_batch(SCHEMA).map_err(sql)?;
        Ok(StateStore { path, db })
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        move |source| StateError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// Insert a new container, taking the lowest free id range of `ranges` (host ranges of
    /// RANGE_SIZE ids each) in the same transaction. Fails on a duplicate name.
    pub fn insert(
        &mut self,
        record: &ContainerRecord,
        ranges: &[IdRange],
    ) -> Result<IdRange, StateError> {
        self.insert_with_gpus(record, ranges, None)
            .map(|(range, _)| range)
    }

    /// [`StateStore::insert`] that also leases GPUs for the container (see [`GpuClaim`]);
    /// returns the id range and the leased GPUs in order.
    pub fn insert_with_gpus(
        &mut self,
        record: &ContainerRecord,
        ranges: &[IdRange],
        claim: Option<&GpuClaim>,
    ) -> Result<(IdRange, Vec<String>), StateError> {
        let path = self.path.clone();
        let sql = move |source| StateError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sql)?;
        if let Some(id) = tx
            .query_row(
                "SELECT id FROM containers WHERE name = ?1",
                params![record.name],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(&sql)?
        {
            return Err(StateError::NameInUse {
                name: record.name.clone(),
                id,
            });
        }
        let used: Vec<(i64, i64)> = {
            let mut stmt = tx
                .prepare("SELECT uid_base, gid_base FROM containers")
                .map_err(&sql)?;
            let rows = stmt
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(&sql)?;
            rows.collect::<Result<_, _>>().map_err(&sql)?
        };
        let range = ranges
            .iter()
            .find(|r| {
                !used
                    .iter()
                    .any(|(u, g)| *u == i64::from(r.uid) || *g == i64::from(r.gid))
            })
            .copied()
            .ok_or(StateError::RangesExhausted {
                slots: ranges.len() as u32,
            })?;
        let record = ContainerRecord {
            ids: range,
            ..record.clone()
        };
        tx.execute(
            &format!("INSERT INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
            params![
                record.id,
                record.name,
                record.created,
                to_json(&record.image),
                to_json(&record.options),
                record.ids.uid,
                record.ids.gid,
                record.ids.size,
                record.status.as_str(),
                record.pid,
                record.monitor_pid,
                record.started_at,
                record.finished_at,
                record.exit.as_ref().map(to_json),
            ],
        )
        .map_err(|source| match source {
            rusqlite::Error::SqliteFailure(ref e, _)
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StateError::NameInUse {
                    name: record.name.clone(),
                    id: "another container".to_owned(),
                }
            }
            other => sql(other),
        })?;
        let mut leased = Vec::new();
        if let Some(claim) = claim {
            let active: Vec<(String, bool, String)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT l.gpu, l.shared, c.name FROM gpu_leases l JOIN containers c ON c.id = l.container_id WHERE c.status != 'exited'",
                    )
                    .map_err(&sql)?;
                let rows = stmt
                    .query_map([], |row| {
                        Ok((row.get(0)?, row.get::<_, i64>(1)? != 0, row.get(2)?))
                    })
                    .map_err(&sql)?;
                rows.collect::<Result<_, _>>().map_err(&sql)?
            };
            let holder = |gpu: &str| {
                active
                    .iter()
                    .find(|(g, shared, _)| g == gpu && !(claim.shared && *shared))
                    .map(|(_, _, name)| name.clone())
            };
            match claim.count {
                Some(n) => {
                    leased = claim
                        .candidates
                        .iter()
                        .filter(|g| holder(g).is_none())
                        .take(n)
                        .cloned()
                        .collect();
                    if leased.len() < n {
                        return Err(StateError::GpuBusy(format!(
                            "{n} GPU(s) asked for, {} free of {}: the others are leased to running containers (`farm ps`); wait for them, or pass --gpu-share to share with containers that share",
                            leased.len(),
                            claim.candidates.len()
                        )));
                    }
                }
                None => {
                    for gpu in &claim.candidates {
                        if let Some(name) = holder(gpu) {
                            let what = match gpu.strip_prefix(crate::gpu::cdi::LEASE_PREFIX) {
                                Some(device) => format!("CDI device {device}"),
                                None => format!("GPU {gpu}"),
                            };
                            return Err(StateError::GpuBusy(format!(
                                "{what} is leased to running container {name}: wait for it (`farm wait {name}`), choose another GPU, or pass --gpu-share if both may share it"
                            )));
                        }
                    }
                    leased = claim.candidates.clone();
                }
            }
            for (position, gpu) in leased.iter().enumerate() {
                tx.execute(
                    "INSERT INTO gpu_leases (container_id, gpu, position, shared) VALUES (?1, ?2, ?3, ?4)",
                    params![record.id, gpu, position as i64, claim.shared],
                )
                .map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)?;
        Ok((range, leased))
    }

    /// Lease ids held by containers that are not exited.
    pub fn active_leases(&self) -> Result<std::collections::BTreeSet<String>, StateError> {
        let mut stmt = self
            .db
            .prepare("SELECT l.gpu FROM gpu_leases l JOIN containers c ON c.id = l.container_id WHERE c.status != 'exited'")
            .map_err(self.sql())?;
        let rows = stmt.query_map([], |row| row.get(0)).map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// The GPUs leased to a container, in order.
    pub fn gpus(&self, id: &str) -> Result<Vec<String>, StateError> {
        let mut stmt = self
            .db
            .prepare("SELECT gpu FROM gpu_leases WHERE container_id = ?1 ORDER BY position")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map(params![id], |row| row.get(0))
            .map_err(self.sql())?;
        rows.collect::<Result<_, _>>().map_err(self.sql())
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Result<Vec<ContainerRecord>, StateError> {
        let mut stmt = self
            .db
            .prepare(&format!(
                "SELECT {COLUMNS} FROM containers ORDER BY created, id"
            ))
            .map_err(self.sql())?;
        let rows = stmt.query_map([], raw_row).map_err(self.sql())?;
        let raws: Vec<RawRow> = rows.collect::<Result<_, _>>().map_err(self.sql())?;
        raws.into_iter().map(RawRow::decode).collect()
    }

    /// The container with this exact id or name, or unique id prefix.
    pub fn get(&self, name_or_id: &str) -> Result<ContainerRecord, StateError> {
        let all = self.list()?;
        if let Some(found) = all
            .iter()
            .find(|c| c.id == name_or_id || c.name == name_or_id)
        {
            return Ok(found.clone());
        }
        let hex = !name_or_id.is_empty() && name_or_id.bytes().all(|b| b.is_ascii_hexdigit());
        let matches: Vec<&ContainerRecord> = if hex {
            all.iter()
                .filter(|c| c.id.starts_with(name_or_id))
                .collect()
        } else {
            Vec::new()
        };
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(StateError::NotFound(name_or_id.to_owned())),
            many => Err(StateError::Ambiguous {
                prefix: name_or_id.to_owned(),
                ids: many
                    .iter()
                    .map(|c| c.id.get(..12).unwrap_or(&c.id))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Record that the container runs.
    pub fn set_running(
        &self,
        id: &str,
        pid: i32,
        monitor_pid: i32,
        started_at: &str,
    ) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE containers SET status = 'running', pid = ?2, monitor_pid = ?3, started_at = ?4 WHERE id = ?1",
                params![id, pid, monitor_pid, started_at],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Record the monitor's pid (before the container runs).
    pub fn set_monitor(&self, id: &str, monitor_pid: i32) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE containers SET monitor_pid = ?2 WHERE id = ?1",
                params![id, monitor_pid],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Record how the container ended.
    pub fn set_exited(&self, id: &str, exit: &Exit, finished_at: &str) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE containers SET status = 'exited', exit = ?2, finished_at = ?3 WHERE id = ?1",
                params![id, to_json(exit), finished_at],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Give container `id` the name `name` (UNIQUE: refused when another container has it).
    pub fn rename(&self, id: &str, name: &str) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE containers SET name = ?2 WHERE id = ?1",
                params![id, name],
            )
            .map_err(|source| match source {
                rusqlite::Error::SqliteFailure(ref e, _)
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    let holder = self.get(name).map_or_else(
                        |_| "another container".to_owned(),
                        |r| r.id[..12].to_owned(),
                    );
                    StateError::NameInUse {
                        name: name.to_owned(),
                        id: holder,
                    }
                }
                other => self.sql()(other),
            })?;
        Ok(())
    }

    /// Forget the container (its id range becomes free).
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        self.db
            .execute(
                "DELETE FROM gpu_leases WHERE container_id = ?1",
                params![id],
            )
            .map_err(self.sql())?;
        self.db
            .execute("DELETE FROM restarts WHERE container_id = ?1", params![id])
            .map_err(self.sql())?;
        self.db
            .execute("DELETE FROM containers WHERE id = ?1", params![id])
            .map_err(self.sql())?;
        Ok(())
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("state records serialize")
}

struct RawRow {
    id: String,
    name: String,
    created: String,
    image: String,
    options: String,
    uid_base: u32,
    gid_base: u32,
    id_count: u32,
    status: String,
    pid: Option<i32>,
    monitor_pid: Option<i32>,
    started_at: Option<String>,
    finished_at: Option<String>,
    exit: Option<String>,
}

fn raw_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: row.get(0)?,
        name: row.get(1)?,
        created: row.get(2)?,
        image: row.get(3)?,
        options: row.get(4)?,
        uid_base: row.get(5)?,
        gid_base: row.get(6)?,
        id_count: row.get(7)?,
        status: row.get(8)?,
        pid: row.get(9)?,
        monitor_pid: row.get(10)?,
        started_at: row.get(11)?,
        finished_at: row.get(12)?,
        exit: row.get(13)?,
    })
}

impl RawRow {
    fn decode(self) -> Result<ContainerRecord, StateError> {
        let corrupt = |reason: String| StateError::Corrupt {
            id: self.id.clone(),
            reason,
        };
        let image =
            serde_json::from_str(&self.image).map_err(|e| corrupt(format!("image: {e}")))?;
        let options =
            serde_json::from_str(&self.options).map_err(|e| corrupt(format!("options: {e}")))?;
        let status = Status::parse(&self.status)
            .ok_or_else(|| corrupt(format!("status {:?}", self.status)))?;
        let exit = match &self.exit {
            Some(text) => {
                Some(serde_json::from_str(text).map_err(|e| corrupt(format!("exit: {e}")))?)
            }
            None => None,
        };
        Ok(ContainerRecord {
            id: self.id,
            name: self.name,
            created: self.created,
            image,
            options,
            ids: IdRange {
                uid: self.uid_base,
                gid: self.gid_base,
                size: self.id_count,
            },
            status,
            pid: self.pid,
            monitor_pid: self.monitor_pid,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            created: "2026-11-23T00:00:00Z".to_owned(),
            image: ImageRef {
                id: "sha256:00".to_owned(),
                name: "busybox".to_owned(),
                chain_ids: vec![],
                layers: vec![],
                config: serde_json::json!({}),
            },
            options: RunOptions::default(),
            ids: IdRange {
                uid: 0,
                gid: 0,
                size: 0,
            },
            status: Status::Created,
            pid: None,
            monitor_pid: None,
            started_at: None,
            finished_at: None,
            exit: None,
        }
    }

    fn ranges(n: u32) -> Vec<IdRange> {
        (0..n)
            .map(|i| IdRange {
                uid: 100_000 + i * 65_536,
                gid: 200_000 + i * 65_536,
                size: 65_536,
            })
            .collect()
    }

    #[test]
    fn names_are_unique_and_ranges_disjoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        let a = store.insert(&record("aa11", "one"), &ranges(2)).unwrap();
        let err = store
            .insert(&record("bb22", "one"), &ranges(2))
            .unwrap_err();
        assert!(matches!(err, StateError::NameInUse { .. }), "{err}");
        let b = store.insert(&record("bb22", "two"), &ranges(2)).unwrap();
        assert_ne!(a.uid, b.uid);
        let err = store
            .insert(&record("cc33", "three"), &ranges(2))
            .unwrap_err();
        assert!(matches!(err, StateError::RangesExhausted { .. }), "{err}");
        store.remove("aa11").unwrap();
        let err = store
            .rename("bb22", "one")
            .map(|_| ())
            .and_then(|_| store.insert(&record("dd44", "one"), &ranges(2)).map(|_| ()));
        assert!(
            matches!(err, Err(StateError::NameInUse { .. })),
            "renamed: {err:?}"
        );
        store.rename("bb22", "two").unwrap();
        assert_eq!(store.get("two").unwrap().id, "bb22");
        let c = store.insert(&record("cc33", "three"), &ranges(2)).unwrap();
        assert_eq!(c, a, "a freed range is reused");
    }

    #[test]
    fn gpus_are_leased_exclusively_unless_shared() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        let gpus = vec!["GPU-a".to_owned(), "GPU-b".to_owned()];
        let claim = |count, shared| GpuClaim {
            candidates: gpus.clone(),
            count,
            shared,
        };
        let (_, first) = store
            .insert_with_gpus(
                &record("c1", "one"),
                &ranges(9),
                Some(&claim(Some(1), false)),
            )
            .unwrap();
        assert_eq!(first, ["GPU-a"]);
        let (_, second) = store
            .insert_with_gpus(
                &record("c2", "two"),
                &ranges(9),
                Some(&claim(Some(1), false)),
            )
            .unwrap();
        assert_eq!(second, ["GPU-b"], "--gpus 1 picks a free one");
        let err = store
            .insert_with_gpus(
                &record("c3", "three"),
                &ranges(9),
                Some(&claim(Some(1), false)),
            )
            .unwrap_err();
        assert!(matches!(err, StateError::GpuBusy(_)), "{err}");
        let err = store
            .insert_with_gpus(&record("c3", "three"), &ranges(9), Some(&claim(None, true)))
            .unwrap_err();
        assert!(
            matches!(err, StateError::GpuBusy(_)),
            "sharing needs the holder to share too: {err}"
        );
        assert!(
            store.get("three").is_err(),
            "a refused claim inserts nothing"
        );
        store.set_exited("c1", &Exit::default(), "now").unwrap();
        let (_, third) = store
            .insert_with_gpus(
                &record("c3", "three"),
                &ranges(9),
                Some(&claim(Some(1), true)),
            )
            .unwrap();
        assert_eq!(third, ["GPU-a"], "an exited container's GPU is free again");
        let (_, fourth) = store
            .insert_with_gpus(
                &record("c4", "four"),
                &ranges(9),
                Some(&claim(Some(1), true)),
            )
            .unwrap();
        assert_eq!(fourth, ["GPU-a"], "shared with a sharing holder");
        assert_eq!(store.gpus("c4").unwrap(), ["GPU-a"]);
        store.remove("c4").unwrap();
        assert!(store.gpus("c4").unwrap().is_empty());
    }

    #[test]
    fn lookup_by_name_id_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        store.insert(&record("abc123", "web"), &ranges(3)).unwrap();
        store.insert(&record("abd456", "db"), &ranges(3)).unwrap();
        assert_eq!(store.get("web").unwrap().id, "abc123");
        assert_eq!(store.get("abd").unwrap().name, "db");
        assert!(matches!(
            store.get("ab").unwrap_err(),
            StateError::Ambiguous { .. }
        ));
        assert!(matches!(
            store.get("zzz").unwrap_err(),
            StateError::NotFound(_)
        ));
        let exit = Exit {
            code: 137,
            oom_killed: true,
            ..Exit::default()
        };
        store.set_exited("abc123", &exit, "later").unwrap();
        let got = store.get("web").unwrap();
        assert_eq!(got.status, Status::Exited);
        assert_eq!(got.exit, Some(exit));
    }
}

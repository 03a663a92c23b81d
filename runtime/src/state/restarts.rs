//! The restart policy's bookkeeping (`restarts` table): RestartCount, the back-off, and
//! whether a `farm stop` ended the container.

use rusqlite::{params, OptionalExtension};

use super::{to_json, Exit, StateError, StateStore};

impl StateStore {
    /// What the restart policy has done so far for container `id`.
    pub fn restarts(&self, id: &str) -> Result<Restarts, StateError> {
        Ok(self
            .db
            .query_row(
                "SELECT count, delay_ms, stop_requested FROM restarts WHERE container_id = ?1",
                params![id],
                |row| {
                    Ok(Restarts {
                        count: row.get(0)?,
                        delay_ms: row.get(1)?,
                        stop_requested: row.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.sql())?
            .unwrap_or_default())
    }

    /// Record that the container ended with `exit` and that its monitor starts it again
    /// after `restarts.delay_ms` (status `restarting`, the count already raised).
    pub fn set_restarting(
        &self,
        id: &str,
        exit: &Exit,
        finished_at: &str,
        restarts: &Restarts,
    ) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE containers SET status = 'restarting', exit = ?2, finished_at = ?3 WHERE id = ?1",
                params![id, to_json(exit), finished_at],
            )
            .map_err(self.sql())?;
        self.db
            .execute(
                "INSERT INTO restarts (container_id, count, delay_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (container_id) DO UPDATE SET count = ?2, delay_ms = ?3",
                params![id, restarts.count, restarts.delay_ms],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// `farm stop`, `rm -f` or `kill`: the restart policy must not start it again. Written
    /// before the signal, so that the monitor that sees the exit also sees this.
    pub fn set_stop_requested(&self, id: &str, requested: bool) -> Result<(), StateError> {
        self.db
            .execute(
                "INSERT INTO restarts (container_id, stop_requested) VALUES (?1, ?2)
                 ON CONFLICT (container_id) DO UPDATE SET stop_requested = ?2",
                params![id, requested],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// `farm restart` of an exited container: `created` again (its monitor starts it), the
    /// stop request cleared, the back-off and RestartCount reset (as moby's manual start).
    pub fn set_created_again(&self, id: &str) -> Result<(), StateError> {
        self.db
            .execute(
                "UPDATE containers SET status = 'created', pid = NULL WHERE id = ?1 AND status = 'exited'",
                params![id],
            )
            .map_err(self.sql())?;
        self.db
            .execute(
                "UPDATE restarts SET stop_requested = 0, delay_ms = 0, count = 0 WHERE container_id = ?1",
                params![id],
            )
            .map_err(self.sql())?;
        Ok(())
    }
}

/// The restart policy's bookkeeping for one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restarts {
    /// docker's RestartCount: how many times the policy started the container again.
    pub count: u32,
    /// The back-off before the next start (moby: 100 ms, doubling, at most a minute,
    /// back to 100 ms after a run of 10 s or more).
    pub delay_ms: u64,
    /// A `farm stop` (or `rm -f`, `kill`) ended the container: no restart.
    pub stop_requested: bool,
}

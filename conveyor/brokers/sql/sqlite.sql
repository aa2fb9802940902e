-- The SQLite broker's schema and queries (see conveyor/brokers/sqlite.py).
--
-- Batches travel as one JSON array parameter read with json_each(), so each statement's text
-- is constant (prepared once, cached by the connection) whatever the batch size.
-- Times are Unix epoch seconds (REAL). The columns of `jobs` are in the order of the fields
-- of conveyor.job.JobRecord: `SELECT *` and `RETURNING *` rows are read in that order.

-- name: schema
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    args TEXT NOT NULL,              -- JSON array
    kwargs TEXT NOT NULL,            -- JSON object
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    eta REAL NOT NULL,
    timeout REAL,
    key TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    result TEXT,                     -- JSON, as the worker encoded it
    error TEXT,                      -- JSON {"type", "message", "traceback"}
    worker TEXT,
    token INTEGER NOT NULL,
    lease_until REAL,
    cancel_requested INTEGER NOT NULL,
    losses INTEGER NOT NULL DEFAULT 0  -- added by schema version 2 (migrate_2), so last
);
-- Each index is partial on the statuses its queries look at, so a job's moves through the
-- lifecycle touch only the indexes it enters or leaves.
-- Claim: the due jobs of one queue in claim order.
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (queue, priority DESC, eta, id)
    WHERE status = 'queued';
-- Promotion and wait: the next scheduled job of one queue.
CREATE INDEX IF NOT EXISTS jobs_scheduled ON jobs (queue, eta) WHERE status = 'scheduled';
-- Recover: expired leases.
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (lease_until) WHERE status = 'running';
-- Retention, purge and redrive: finished jobs by status, oldest first. Only finished jobs
-- have a finished_at, and a query's `finished_at < ?` or `finished_at IS NOT NULL` lets
-- SQLite use this index.
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (status, finished_at)
    WHERE finished_at IS NOT NULL;
-- Uniqueness: one unfinished job per key, enforced by SQLite itself, so that concurrent
-- producers cannot both insert one; finishing a job frees its key.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_key ON jobs (key)
    WHERE key IS NOT NULL AND status IN ('scheduled', 'queued', 'running');
-- Paused queues: claim and wait skip them.
CREATE TABLE IF NOT EXISTS paused (queue TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    info TEXT NOT NULL,              -- JSON WorkerInfo
    seen_at REAL NOT NULL
);

-- name: migrate_2
-- Schema version 1 to 2: a job counts the times its worker was lost apart from its attempts.
ALTER TABLE jobs ADD COLUMN losses INTEGER NOT NULL DEFAULT 0;

-- name: insert
-- One job of an enqueue batch; a conflict (its key is held, or its id exists) inserts nothing.
INSERT INTO jobs VALUES (
    :id, :task, :queue, :args, :kwargs, :status, :priority, :attempts, :max_attempts, :eta,
    :timeout, :key, :created_at, :started_at, :finished_at, :result, :error, :worker, :token,
    :lease_until, :cancel_requested, :losses
) ON CONFLICT DO NOTHING;

-- name: key_holder
SELECT * FROM jobs WHERE key = :key AND status IN ('scheduled', 'queued', 'running');

-- name: get
SELECT * FROM jobs WHERE id = :id;

-- name: promote
-- Scheduled jobs of the claimed queues whose eta has come become queued (paused queues' stay).
UPDATE jobs SET status = 'queued'
WHERE status = 'scheduled' AND eta <= :now
    AND queue IN (SELECT value FROM json_each(:queues))
    AND queue NOT IN (SELECT queue FROM paused);

-- name: claim
-- The best `limit` queued jobs of the claimed queues. The candidates placeholder below becomes
-- one `claim_candidates` subquery per queue, joined with UNION ALL. Each walks jobs_ready in
-- order and stops after `limit` rows, where a single `queue IN (...)` would sort every queued
-- job of those queues. RETURNING gives no order: the broker sorts the claimed rows.
UPDATE jobs SET
    status = 'running',
    attempts = attempts + 1,
    token = token + 1,
    worker = :worker,
    started_at = :now,
    lease_until = :lease_until
WHERE rowid IN (
    SELECT job FROM (/*candidates*/) ORDER BY priority DESC, eta, id LIMIT :limit
)
RETURNING *;

-- name: claim_candidates
-- None when the queue is paused (SQLite evaluates that uncorrelated EXISTS once).
SELECT * FROM (
    SELECT rowid AS job, priority, eta, id FROM jobs
    WHERE status = 'queued' AND queue = :queue
        AND NOT EXISTS (SELECT 1 FROM paused WHERE paused.queue = :queue)
    ORDER BY priority DESC, eta, id LIMIT :limit
)

-- name: data_version
-- Changes whenever another connection commits: a cheap way to notice other processes.
PRAGMA data_version;

-- name: paused
SELECT queue FROM paused ORDER BY queue;

-- name: pause
INSERT INTO paused (queue) VALUES (:queue) ON CONFLICT DO NOTHING;

-- name: resume
DELETE FROM paused WHERE queue = :queue;

-- name: any_queued
SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued' AND queue = :queue);

-- name: next_eta
SELECT min(eta) FROM jobs WHERE status = 'scheduled' AND queue = :queue;

-- name: heartbeat
-- Each lease is {"id", "token"}; only a current token on a running job extends its lease.
UPDATE jobs SET lease_until = :lease_until
FROM (
    SELECT value ->> '$.id' AS lease_id, value ->> '$.token' AS lease_token
    FROM json_each(:leases)
) AS held
WHERE jobs.id = held.lease_id AND jobs.token = held.lease_token AND jobs.status = 'running'
RETURNING jobs.id, jobs.token, jobs.cancel_requested;

-- name: worker_seen
INSERT INTO workers (id, info, seen_at) VALUES (:id, :info, :seen_at)
ON CONFLICT (id) DO UPDATE SET info = excluded.info, seen_at = excluded.seen_at;

-- name: workers
SELECT info FROM workers WHERE seen_at > :since ORDER BY id;

-- name: finish
-- Each outcome is [id, token, status, finished_at, result, error, eta]. A retry (status
-- scheduled or queued, decided in Python from its eta) keeps finished_at and result and moves
-- the eta; a final status sets finished_at and result and keeps the eta.
UPDATE jobs SET
    status = o.out_status,
    eta = coalesce(o.out_eta, jobs.eta),
    finished_at = iif(o.out_final, o.out_finished_at, jobs.finished_at),
    result = iif(o.out_final, o.out_result, jobs.result),
    error = o.out_error,
    worker = NULL,
    lease_until = NULL,
    cancel_requested = 0
FROM (
    SELECT
        value ->> 0 AS out_id,
        value ->> 1 AS out_token,
        value ->> 2 AS out_status,
        value ->> 3 AS out_finished_at,
        value ->> 4 AS out_result,
        value ->> 5 AS out_error,
        value ->> 6 AS out_eta,
        value ->> 2 NOT IN ('scheduled', 'queued') AS out_final
    FROM json_each(:outcomes)
) AS o
WHERE jobs.id = o.out_id AND jobs.token = o.out_token AND jobs.status = 'running'
RETURNING jobs.id, jobs.token, jobs.queue, jobs.status;

-- name: release
-- Running jobs handed back (at shutdown; or for a worker that knows their task): due at :eta
-- (scheduled when later than :now), and the attempt does not count. A job that was asked to
-- cancel is cancelled instead of run again.
UPDATE jobs SET
    status = CASE
        WHEN cancel_requested THEN 'cancelled' WHEN :eta > :now THEN 'scheduled' ELSE 'queued'
    END,
    attempts = max(attempts - 1, 0),
    worker = NULL,
    lease_until = NULL,
    eta = CASE WHEN cancel_requested THEN eta ELSE :eta END,
    finished_at = CASE WHEN cancel_requested THEN :now ELSE NULL END,
    cancel_requested = 0
FROM (
    SELECT value ->> '$.id' AS lease_id, value ->> '$.token' AS lease_token
    FROM json_each(:leases)
) AS held
WHERE jobs.id = held.lease_id AND jobs.token = held.lease_token AND jobs.status = 'running'
RETURNING jobs.queue, jobs.status;

-- name: expired
-- No ORDER BY: sorting by id would tempt SQLite to walk the whole id index instead of
-- the few expired entries of jobs_leases.
SELECT id, worker, attempts, losses, cancel_requested FROM jobs
WHERE status = 'running' AND lease_until <= :now;

-- name: recover
-- Each entry is [id, error]: the error explains the expiry (it names the worker and attempt,
-- or says the job is a poison pill). A loss is not an attempt: attempts goes back down and
-- losses up; the loss after :max_losses fails the job (SET reads the row as it was).
UPDATE jobs SET
    status = CASE
        WHEN cancel_requested THEN 'cancelled'
        WHEN losses >= :max_losses THEN 'failed'
        ELSE 'queued'
    END,
    finished_at = iif(cancel_requested OR losses >= :max_losses, :now, finished_at),
    eta = iif(cancel_requested OR losses >= :max_losses, eta, :now),
    attempts = max(attempts - 1, 0),
    losses = losses + 1,
    error = e.expiry_error,
    worker = NULL,
    lease_until = NULL,
    cancel_requested = 0
FROM (SELECT value ->> 0 AS expired_id, value ->> 1 AS expiry_error FROM json_each(:expired)) AS e
WHERE jobs.id = e.expired_id AND jobs.status = 'running' AND jobs.lease_until <= :now
RETURNING jobs.id, jobs.queue, jobs.status;

-- name: fail_damaged
-- Claimed jobs whose stored record does not decode: each entry is [id, token, error]. They
-- fail alone, with the error saying which field is damaged; the rest of the claim runs.
UPDATE jobs SET
    status = 'failed',
    finished_at = :now,
    error = d.damage,
    worker = NULL,
    lease_until = NULL,
    cancel_requested = 0
FROM (
    SELECT value ->> 0 AS damaged_id, value ->> 1 AS damaged_token, value ->> 2 AS damage
    FROM json_each(:damaged)
) AS d
WHERE jobs.id = d.damaged_id AND jobs.token = d.damaged_token AND jobs.status = 'running';

-- name: list
SELECT * FROM jobs
WHERE id < coalesce(:before, char(1114111))  -- U+10FFFF sorts after any job id
    AND (:status IS NULL OR status = :status)
    AND (:queue IS NULL OR queue = :queue)
    AND (:task IS NULL OR task = :task)
ORDER BY id DESC
LIMIT :limit;

-- name: counts
-- A scheduled job whose eta has come counts as queued, as a claim would first make it.
SELECT queue, iif(status = 'scheduled' AND eta <= :now, 'queued', status) AS shown, count(*)
FROM jobs
GROUP BY queue, shown;

-- name: cancel_pending
UPDATE jobs SET status = 'cancelled', finished_at = :now, lease_until = NULL, cancel_requested = 0
WHERE id = :id AND status IN ('scheduled', 'queued');

-- name: cancel_running
-- Its worker learns of it at its next heartbeat.
UPDATE jobs SET cancel_requested = 1 WHERE id = :id AND status = 'running';

-- name: retry_failed_ids
-- OR IGNORE skips, row by row, a job whose key an unfinished job holds (jobs_key). A redriven
-- job starts afresh: its attempts and losses count from zero.
UPDATE OR IGNORE jobs SET status = 'queued', attempts = 0, losses = 0, finished_at = NULL, eta = :now
WHERE id IN (SELECT value FROM json_each(:ids))
    AND status = 'failed' AND (:queue IS NULL OR queue = :queue)
RETURNING queue;

-- name: retry_failed_all
UPDATE OR IGNORE jobs SET status = 'queued', attempts = 0, losses = 0, finished_at = NULL, eta = :now
WHERE status = 'failed' AND finished_at IS NOT NULL AND (:queue IS NULL OR queue = :queue)
RETURNING queue;

-- name: purge_ids
DELETE FROM jobs
WHERE id IN (SELECT value FROM json_each(:ids))
    AND status = :status AND (:queue IS NULL OR queue = :queue);

-- name: purge_all
DELETE FROM jobs
WHERE status = :status AND finished_at IS NOT NULL AND (:queue IS NULL OR queue = :queue);

-- name: prune
-- Oldest first across the three final statuses, each read in jobs_finished order.
DELETE FROM jobs WHERE rowid IN (
    SELECT job FROM (
        SELECT * FROM (
            SELECT rowid AS job, finished_at FROM jobs
            WHERE status = 'succeeded' AND finished_at < :succeeded
            ORDER BY finished_at LIMIT :limit
        )
        UNION ALL
        SELECT * FROM (
            SELECT rowid AS job, finished_at FROM jobs
            WHERE status = 'failed' AND finished_at < :failed
            ORDER BY finished_at LIMIT :limit
        )
        UNION ALL
        SELECT * FROM (
            SELECT rowid AS job, finished_at FROM jobs
            WHERE status = 'cancelled' AND finished_at < :cancelled
            ORDER BY finished_at LIMIT :limit
        )
    )
    ORDER BY finished_at LIMIT :limit
);

-- name: prune_workers
-- Workers gone for longer than every retention: nothing keeps their rows forever.
DELETE FROM workers WHERE seen_at < :before;

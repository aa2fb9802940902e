-- The PostgreSQL broker's schema and queries (see conveyor/brokers/postgres.py).
--
-- Every name lives in one PostgreSQL schema, `conveyor` unless the URL says ?schema=NAME:
-- the broker writes that name where these sections say {schema}, and uses it as the
-- LISTEN/NOTIFY channel too. Parameters are psycopg's, as in %(name)s (so a comment here
-- never holds a percent sign).
--
-- Jobs travel as JSON both ways: a batch is one JSON array parameter read with
-- json_populate_record or json_to_recordset, and jobs come back as row_to_json text, so
-- msgspec encodes and decodes them in one call each. Arguments, results and errors are
-- `json`, not `jsonb`: json keeps the text as written, so 1e300 stays a float and the
-- order of keys is kept. Times are Unix epoch seconds (double precision), exact both ways.
--
-- Every statement that makes a job due, or moves the next eta of a queue, ends with
-- pg_notify('{schema}', queue) for each queue it touched (paused queues are skipped): the
-- notification leaves with the commit, so a producer's own transaction wakes workers only
-- when it commits, and PostgreSQL sends one per queue and transaction however many jobs.
--
-- Migrations are named migrate_1, migrate_2... and each must be idempotent (IF NOT EXISTS),
-- so that the script `conveyor migrate --sql` prints can be applied more than once.

-- name: migrate_lock
-- Many workers may start at once on an empty database: they migrate one after the other.
SELECT pg_advisory_xact_lock(hashtextextended('conveyor migrate {schema}', 0));

-- name: prepare
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: installed
SELECT to_regclass('{schema}.schema_version') IS NOT NULL;

-- name: version
SELECT coalesce(max(version), 0) FROM {schema}.schema_version;

-- name: set_version
INSERT INTO {schema}.schema_version (version) VALUES (%(version)s) ON CONFLICT DO NOTHING;

-- name: migrate_1
-- The columns follow the fields of conveyor.job.JobRecord. Ids, queues and keys sort
-- byte-wise (COLLATE "C"), as Python compares them.
CREATE TABLE IF NOT EXISTS {schema}.jobs (
    id text COLLATE "C" PRIMARY KEY,
    task text NOT NULL,
    queue text COLLATE "C" NOT NULL,
    args json NOT NULL,
    kwargs json NOT NULL,
    status text NOT NULL CHECK (
        status IN ('scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled')
    ),
    priority bigint NOT NULL,
    attempts bigint NOT NULL,
    max_attempts bigint NOT NULL,
    eta double precision NOT NULL,
    timeout double precision,
    key text COLLATE "C",
    created_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    result json,
    error json,                      -- {"type", "message", "traceback"}
    worker text,
    token bigint NOT NULL,
    lease_until double precision,
    cancel_requested boolean NOT NULL
) WITH (
    -- A queue table churns: vacuum it after a small share of dead rows, so that the
    -- indexes of due jobs stay small.
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
-- Each index is partial on the statuses its queries look at, so a job's moves through the
-- lifecycle touch only the indexes it enters.
-- Claim and wait: the queued jobs of one queue in claim order.
CREATE INDEX IF NOT EXISTS jobs_ready ON {schema}.jobs (queue, priority DESC, eta, id)
    WHERE status = 'queued';
-- Claim and wait: the scheduled jobs of one queue by eta.
CREATE INDEX IF NOT EXISTS jobs_scheduled ON {schema}.jobs (queue, eta)
    WHERE status = 'scheduled';
-- Recover: expired leases.
CREATE INDEX IF NOT EXISTS jobs_leases ON {schema}.jobs (lease_until) WHERE status = 'running';
-- Retention, purge and redrive: finished jobs by status, oldest first.
CREATE INDEX IF NOT EXISTS jobs_finished ON {schema}.jobs (status, finished_at)
    WHERE finished_at IS NOT NULL;
-- Uniqueness: one unfinished job per key, enforced by PostgreSQL itself, so that concurrent
-- producers cannot both insert one; finishing a job frees its key.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_key ON {schema}.jobs (key)
    WHERE key IS NOT NULL AND status IN ('scheduled', 'queued', 'running');
CREATE TABLE IF NOT EXISTS {schema}.workers (
    id text PRIMARY KEY,
    info json NOT NULL,              -- WorkerInfo
    seen_at double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.paused (queue text COLLATE "C" PRIMARY KEY);

-- name: migrate_2
-- A job counts the times its worker was lost (its lease expired) apart from its attempts.
-- A constant default adds the column without rewriting the table (PostgreSQL 11 and later).
ALTER TABLE {schema}.jobs ADD COLUMN IF NOT EXISTS losses bigint NOT NULL DEFAULT 0;

-- name: enqueue
-- The whole batch in one statement, in the order given, so that within a batch the first
-- job with a key wins. ON CONFLICT DO NOTHING skips a job whose key an unfinished job holds
-- (jobs_key; a concurrent producer's insert is waited for) or whose id exists already.
WITH inserted AS (
    INSERT INTO {schema}.jobs (
        id, task, queue, args, kwargs, status, priority, attempts, max_attempts, eta,
        timeout, key, created_at, started_at, finished_at, result, error, worker, token,
        lease_until, cancel_requested, losses
    )
    SELECT
        id, task, queue, args, kwargs, status, priority, attempts, max_attempts, eta,
        timeout, key, created_at, started_at, finished_at, result, error, worker, token,
        lease_until, cancel_requested, losses
    FROM json_populate_recordset(NULL::{schema}.jobs, %(jobs)s::json) WITH ORDINALITY AS batch
    ORDER BY batch.ordinality
    ON CONFLICT DO NOTHING
    RETURNING id, queue
), woken AS (
    SELECT pg_notify('{schema}', q.queue) FROM (SELECT DISTINCT queue FROM inserted) AS q
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.paused WHERE paused.queue = q.queue)
)
SELECT inserted.id FROM inserted, (SELECT count(*) FROM woken) AS notified;

-- name: holders
-- After a conflict: the unfinished jobs holding these keys, and the jobs with these ids.
SELECT row_to_json(jobs)::text FROM {schema}.jobs
WHERE (key = ANY(%(keys)s::text[]) AND status IN ('scheduled', 'queued', 'running'))
    OR id = ANY(%(ids)s::text[]);

-- name: get
SELECT row_to_json(jobs)::text FROM {schema}.jobs WHERE id = %(id)s;

-- name: claim
-- For each unpaused queue, the best `limit` queued jobs (a walk of jobs_ready that stops
-- early) and the best `limit` scheduled jobs whose eta has come, each locked with SKIP
-- LOCKED so that concurrent claimers pass each other by; then the best `limit` of all
-- these become running. The rows locked but not taken are free again at the commit, which
-- ends this statement. A due scheduled job goes straight to running.
WITH claimed AS (
    UPDATE {schema}.jobs SET
        status = 'running',
        attempts = attempts + 1,
        token = token + 1,
        worker = %(worker)s,
        started_at = %(now)s,
        lease_until = %(lease_until)s
    WHERE id IN (
        SELECT candidate.id
        FROM unnest(%(queues)s::text[]) AS q (queue)
        CROSS JOIN LATERAL (
            SELECT * FROM (
                SELECT id, priority, eta FROM {schema}.jobs
                WHERE status = 'queued' AND queue = q.queue
                ORDER BY priority DESC, eta, id
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            ) AS ready
            UNION ALL
            SELECT * FROM (
                SELECT id, priority, eta FROM {schema}.jobs
                WHERE status = 'scheduled' AND queue = q.queue AND eta <= %(now)s
                ORDER BY priority DESC, eta, id
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            ) AS due
        ) AS candidate
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.paused WHERE paused.queue = q.queue)
        ORDER BY candidate.priority DESC, candidate.eta, candidate.id
        LIMIT %(limit)s
    )
    RETURNING jobs.*
)
SELECT json_agg(claimed ORDER BY priority DESC, eta, id)::text FROM claimed;

-- name: unclaim
-- Claims whose answer the worker never read (the connection was lost, or the claim was
-- cancelled while it ran): it never got these jobs, so they go back as they were, the
-- attempt uncounted. Each entry is {"worker", "started_at"}: one claim call's worker and
-- time (its "damaged" jobs, failed just before, are no longer running).
UPDATE {schema}.jobs SET
    status = 'queued',
    attempts = greatest(attempts - 1, 0),
    worker = NULL,
    lease_until = NULL
FROM json_to_recordset(%(claims)s::json) AS lost (worker text, started_at double precision)
WHERE jobs.status = 'running' AND jobs.worker = lost.worker
    AND jobs.started_at = lost.started_at;

-- name: probe
-- For wait: whether a job is queued in the unpaused queues, and the earliest eta of their
-- scheduled jobs. Each is an index probe per queue: the first entry of jobs_ready (an
-- EXISTS could be planned as a scan of the table) and the first of jobs_scheduled.
SELECT bool_or(s.ready), min(s.next_eta)
FROM unnest(%(queues)s::text[]) AS q (queue)
CROSS JOIN LATERAL (
    SELECT
        (
            SELECT id FROM {schema}.jobs WHERE status = 'queued' AND queue = q.queue
            ORDER BY priority DESC, eta, id LIMIT 1
        ) IS NOT NULL AS ready,
        (
            SELECT min(eta) FROM {schema}.jobs WHERE status = 'scheduled' AND queue = q.queue
        ) AS next_eta
) AS s
WHERE NOT EXISTS (SELECT 1 FROM {schema}.paused WHERE paused.queue = q.queue);

-- name: listen
LISTEN {schema};

-- name: heartbeat
-- Records the worker and extends the leases it still holds: each lease is {"id", "token"},
-- and only a current token on a running job counts.
WITH seen AS (
    INSERT INTO {schema}.workers (id, info, seen_at)
    VALUES (%(id)s, %(info)s::json, %(seen_at)s)
    ON CONFLICT (id) DO UPDATE SET info = excluded.info, seen_at = excluded.seen_at
)
UPDATE {schema}.jobs SET lease_until = %(lease_until)s
FROM json_to_recordset(%(leases)s::json) AS held (id text, token bigint)
WHERE jobs.id = held.id AND jobs.token = held.token AND jobs.status = 'running'
RETURNING jobs.id, jobs.token, jobs.cancel_requested;

-- name: workers
SELECT info::text FROM {schema}.workers WHERE seen_at > %(since)s ORDER BY id;

-- name: finish
-- Each outcome is {"id", "token", "status", "finished_at", "result", "error", "eta"}. A
-- retry (status scheduled or queued, decided from its eta) moves the eta and keeps
-- finished_at and result; a final status sets finished_at and result and keeps the eta.
WITH outcome AS (
    SELECT *, status NOT IN ('scheduled', 'queued') AS final
    FROM json_to_recordset(%(outcomes)s::json) AS o (
        id text, token bigint, status text, finished_at double precision, result json,
        error json, eta double precision
    )
), done AS (
    UPDATE {schema}.jobs SET
        status = outcome.status,
        eta = CASE WHEN outcome.final THEN jobs.eta ELSE outcome.eta END,
        finished_at = CASE WHEN outcome.final THEN outcome.finished_at ELSE jobs.finished_at END,
        result = CASE WHEN outcome.final THEN outcome.result ELSE jobs.result END,
        error = outcome.error,
        worker = NULL,
        lease_until = NULL,
        cancel_requested = false
    FROM outcome
    WHERE jobs.id = outcome.id AND jobs.token = outcome.token AND jobs.status = 'running'
    RETURNING jobs.id, jobs.token, jobs.queue, outcome.final
), woken AS (
    SELECT pg_notify('{schema}', q.queue)
    FROM (SELECT DISTINCT queue FROM done WHERE NOT final) AS q
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.paused WHERE paused.queue = q.queue)
)
SELECT done.id, done.token FROM done, (SELECT count(*) FROM woken) AS notified;

-- name: release
-- Running jobs handed back (at shutdown; or for a worker that knows their task): due at
-- %(eta)s (scheduled when later than %(now)s), and the attempt does not count. A job that
-- was asked to cancel is cancelled instead of run again.
WITH released AS (
    UPDATE {schema}.jobs SET
        status = CASE
            WHEN cancel_requested THEN 'cancelled'
            WHEN %(eta)s > %(now)s THEN 'scheduled'
            ELSE 'queued'
        END,
        attempts = greatest(attempts - 1, 0),
        worker = NULL,
        lease_until = NULL,
        eta = CASE WHEN cancel_requested THEN eta ELSE %(eta)s END,
        finished_at = CASE WHEN cancel_requested THEN %(now)s ELSE finished_at END,
        cancel_requested = false
    FROM json_to_recordset(%(leases)s::json) AS held (id text, token bigint)
    WHERE jobs.id = held.id AND jobs.token = held.token AND jobs.status = 'running'
    RETURNING jobs.queue, jobs.status
), woken AS (
    SELECT pg_notify('{schema}', q.queue)
    FROM (SELECT DISTINCT queue FROM released WHERE status = 'queued') AS q
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.paused WHERE paused.queue = q.queue)
)
SELECT count(*) FROM released, (SELECT count(*) FROM woken) AS notified;

-- name: expired
SELECT id, token, worker, attempts, losses FROM {schema}.jobs
WHERE status = 'running' AND lease_until <= %(now)s;

-- name: recover
-- Each entry is {"id", "token", "error", "poison"}: the error explains the expiry (it names
-- the worker and the attempt), the poison pill's says the job kills its workers. A loss is
-- not an attempt: attempts goes back down and losses up. A job asked to cancel ends
-- cancelled (with the expiry's error); the loss after max_losses fails the job as a poison
-- pill; any other job is queued again. SET reads the row as it was before the update.
WITH expired AS (
    SELECT * FROM json_to_recordset(%(expired)s::json)
        AS e (id text, token bigint, error json, poison json)
), recovered AS (
    UPDATE {schema}.jobs SET
        status = CASE
            WHEN cancel_requested THEN 'cancelled'
            WHEN losses >= %(max_losses)s THEN 'failed'
            ELSE 'queued'
        END,
        finished_at = CASE
            WHEN cancel_requested OR losses >= %(max_losses)s THEN %(now)s ELSE finished_at
        END,
        eta = CASE WHEN cancel_requested OR losses >= %(max_losses)s THEN eta ELSE %(now)s END,
        attempts = greatest(attempts - 1, 0),
        losses = losses + 1,
        error = CASE
            WHEN NOT cancel_requested AND losses >= %(max_losses)s THEN expired.poison
            ELSE expired.error
        END,
        worker = NULL,
        lease_until = NULL,
        cancel_requested = false
    FROM expired
    WHERE jobs.id = expired.id AND jobs.token = expired.token AND jobs.status = 'running'
        AND jobs.lease_until <= %(now)s
    RETURNING jobs.id, jobs.queue, jobs.status
), woken AS (
    SELECT pg_notify('{schema}', q.queue)
    FROM (SELECT DISTINCT queue FROM recovered WHERE status = 'queued') AS q
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.paused WHERE paused.queue = q.queue)
)
SELECT recovered.id FROM recovered, (SELECT count(*) FROM woken) AS notified;

-- name: fail_damaged
-- Claimed jobs whose stored record does not decode: each entry is {"id", "token", "error"}.
-- They fail alone, the error saying which field is damaged; the rest of the claim runs.
UPDATE {schema}.jobs SET
    status = 'failed',
    finished_at = %(now)s,
    error = damaged.error,
    worker = NULL,
    lease_until = NULL,
    cancel_requested = false
FROM json_to_recordset(%(damaged)s::json) AS damaged (id text, token bigint, error json)
WHERE jobs.id = damaged.id AND jobs.token = damaged.token AND jobs.status = 'running';

-- name: list
SELECT row_to_json(jobs)::text FROM {schema}.jobs
WHERE (%(before)s::text IS NULL OR id < %(before)s::text)
    AND (%(status)s::text IS NULL OR status = %(status)s::text)
    AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    AND (%(task)s::text IS NULL OR task = %(task)s::text)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: counts
-- A scheduled job whose eta has come counts as queued, as a claim would take it.
SELECT queue,
    CASE WHEN status = 'scheduled' AND eta <= %(now)s THEN 'queued' ELSE status END AS shown,
    count(*)
FROM {schema}.jobs
GROUP BY queue, shown;

-- name: paused
SELECT queue FROM {schema}.paused ORDER BY queue;

-- name: pause
INSERT INTO {schema}.paused (queue) VALUES (%(queue)s) ON CONFLICT DO NOTHING;

-- name: resume
WITH resumed AS (DELETE FROM {schema}.paused WHERE queue = %(queue)s)
SELECT pg_notify('{schema}', %(queue)s);

-- name: cancel
-- A pending job ends cancelled at once; a running one is flagged for its worker's next
-- heartbeat; a finished one is returned as it is.
WITH pending AS (
    UPDATE {schema}.jobs SET
        status = 'cancelled', finished_at = %(now)s, lease_until = NULL, cancel_requested = false
    WHERE id = %(id)s AND status IN ('scheduled', 'queued')
    RETURNING jobs.*
), running AS (
    UPDATE {schema}.jobs SET cancel_requested = true
    WHERE id = %(id)s AND status = 'running'
    RETURNING jobs.*
)
SELECT row_to_json(pending)::text FROM pending
UNION ALL
SELECT row_to_json(running)::text FROM running
UNION ALL
SELECT row_to_json(jobs)::text FROM {schema}.jobs
WHERE id = %(id)s AND status IN ('succeeded', 'failed', 'cancelled');

-- name: retry_failed
-- Failed jobs (these ids, or all) of a queue (or any) go back to queued with their
-- attempts and losses reset. A job whose key an unfinished job holds stays failed; of several failed
-- jobs with one key, the first (in the order of ids, else the oldest) goes.
WITH chosen AS (
    SELECT DISTINCT ON (key, CASE WHEN key IS NULL THEN id END) id
    FROM {schema}.jobs
    WHERE status = 'failed' AND finished_at IS NOT NULL
        AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
        AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
        AND (key IS NULL OR NOT EXISTS (
            SELECT 1 FROM {schema}.jobs AS holder
            WHERE holder.key = jobs.key AND holder.status IN ('scheduled', 'queued', 'running')
        ))
    ORDER BY key, CASE WHEN key IS NULL THEN id END,
        array_position(%(ids)s::text[], id), id
), moved AS (
    UPDATE {schema}.jobs SET
        status = 'queued', attempts = 0, losses = 0, finished_at = NULL, eta = %(now)s
    FROM chosen
    WHERE jobs.id = chosen.id AND jobs.status = 'failed'
    RETURNING jobs.queue
), woken AS (
    SELECT pg_notify('{schema}', q.queue) FROM (SELECT DISTINCT queue FROM moved) AS q
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.paused WHERE paused.queue = q.queue)
)
SELECT count(*) FROM moved, (SELECT count(*) FROM woken) AS notified;

-- name: purge
DELETE FROM {schema}.jobs
WHERE status = %(status)s AND finished_at IS NOT NULL
    AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]));

-- name: prune
-- Up to `limit` finished jobs past their retention, oldest first across the three final
-- statuses (each read in jobs_finished order), skipping rows another pruner holds; and
-- the workers gone for longer than every retention.
WITH gone_workers AS (
    DELETE FROM {schema}.workers WHERE seen_at < %(workers_before)s
)
DELETE FROM {schema}.jobs WHERE id IN (
    SELECT id FROM (
        SELECT * FROM (
            SELECT id, finished_at FROM {schema}.jobs
            WHERE status = 'succeeded' AND finished_at < %(succeeded)s
            ORDER BY finished_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        ) AS s
        UNION ALL
        SELECT * FROM (
            SELECT id, finished_at FROM {schema}.jobs
            WHERE status = 'failed' AND finished_at < %(failed)s
            ORDER BY finished_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        ) AS f
        UNION ALL
        SELECT * FROM (
            SELECT id, finished_at FROM {schema}.jobs
            WHERE status = 'cancelled' AND finished_at < %(cancelled)s
            ORDER BY finished_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        ) AS c
    ) AS old
    ORDER BY finished_at
    LIMIT %(limit)s
);

-- The stream's ledger agrees with what its committed micro-batches wrote: per batch, the lines
-- read are accepted or quarantined, the accepted ones are in bronze.rating_events, the
-- quarantined ones in bronze.quarantine, the batch's files add up to it, and its timestamps are
-- in order. Returns one row per disagreement, with what disagrees.
-- A batch that started before rows were removed on purpose (an erasure, the quarantine's
-- retention: macros/removed_on_purpose.sql) may have fewer rows in bronze than its ledger counts,
-- never more; the ledger keeps the counts, so read = accepted + quarantined still holds.

with

batches as (

    select * from {{ source('stream', 'stream_batches') }}

),

rating_events as (

    select * from {{ source('stream', 'rating_events') }}

),

stream_files as (

    select * from {{ source('stream', 'stream_files') }}

),

quarantine as (

    select * from {{ source('movielens', 'quarantine') }}

),

events_per_batch as (

    select
        load_id,
        count(*) as event_rows

    from rating_events
    group by load_id

),

quarantined_per_batch as (

    select
        load_id,
        count(*) as quarantine_rows

    from quarantine
    where target_table = 'bronze.rating_events'
    group by load_id

),

files_per_batch as (

    select
        load_id,
        count(*) as file_count,
        sum(rows_read) as file_rows_read,
        sum(rows_accepted) as file_rows_accepted,
        sum(rows_quarantined) as file_rows_quarantined

    from stream_files
    group by load_id

),

removals as (

    select
        {{ removed_on_purpose_before('bronze.rating_events') }} as events_removed_before,
        {{ removed_on_purpose_before('bronze.quarantine') }} as quarantine_removed_before

),

joined as (

    select
        batches.load_id,
        batches.files,
        batches.rows_read,
        batches.rows_accepted,
        batches.rows_quarantined,
        batches.started_at,
        batches.committed_at,
        batches.finished_at,
        coalesce(events_per_batch.event_rows, 0) as event_rows,
        coalesce(quarantined_per_batch.quarantine_rows, 0) as quarantine_rows,
        coalesce(files_per_batch.file_count, 0) as file_count,
        coalesce(files_per_batch.file_rows_read, 0) as file_rows_read,
        coalesce(files_per_batch.file_rows_accepted, 0) as file_rows_accepted,
        coalesce(files_per_batch.file_rows_quarantined, 0) as file_rows_quarantined,
        batches.started_at < removals.events_removed_before as events_may_be_removed,
        batches.started_at < removals.quarantine_removed_before as quarantine_may_be_removed

    from batches
    cross join removals
    left join events_per_batch
        on batches.load_id = events_per_batch.load_id
    left join quarantined_per_batch
        on batches.load_id = quarantined_per_batch.load_id
    left join files_per_batch
        on batches.load_id = files_per_batch.load_id

),

disagreements as (

    select
        load_id,
        case
            when rows_read <> rows_accepted + rows_quarantined
                then 'rows_read <> rows_accepted + rows_quarantined'
            when rows_accepted <> event_rows
                and not (events_may_be_removed and event_rows < rows_accepted)
                then 'rows_accepted <> rows in bronze.rating_events'
            when rows_quarantined <> quarantine_rows
                and not (quarantine_may_be_removed and quarantine_rows < rows_quarantined)
                then 'rows_quarantined <> rows in bronze.quarantine'
            when files <> file_count
                then 'files <> rows in bronze.stream_files'
            when rows_read <> file_rows_read
                or rows_accepted <> file_rows_accepted
                or rows_quarantined <> file_rows_quarantined
                then 'batch counts <> sum of its files'
            when started_at > committed_at or committed_at > finished_at
                then 'not started_at <= committed_at <= finished_at'
        end as problem

    from joined

)

select * from disagreements
where problem is not null

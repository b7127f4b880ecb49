with

batches as (

    select * from {{ ref('stg_stream__batches') }}

),

stream_files as (

    select * from {{ ref('stg_stream__files') }}

),

quarantine as (

    select * from {{ ref('stg_movielens__quarantine') }}

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
        min(landed_at) as first_landed_at

    from stream_files
    group by load_id

),

joined as (

    select
        batches.query_id,
        batches.batch_id,
        batches.load_id,
        batches.started_at,
        batches.committed_at,
        batches.finished_at,
        {{ dbt.date_trunc('minute', 'batches.committed_at') }} as committed_minute,
        batches.file_count,
        batches.rows_read,
        batches.rows_accepted,
        batches.rows_quarantined,
        coalesce(quarantined_per_batch.quarantine_rows, 0) as quarantine_rows,
        cast(batches.rows_quarantined as double)
            / nullif(batches.rows_read, 0) as quarantined_share,
        batches.batch_seconds,
        batches.rows_per_second,
        batches.latency_p50_seconds,
        batches.latency_max_seconds,
        {{ seconds_between('files_per_batch.first_landed_at', 'batches.finished_at') }}
            as refresh_latency_max_seconds,
        batches.users_refreshed,
        batches.fold_in_seconds

    from batches
    left join quarantined_per_batch
        on batches.load_id = quarantined_per_batch.load_id
    left join files_per_batch
        on batches.load_id = files_per_batch.load_id

)

select * from joined

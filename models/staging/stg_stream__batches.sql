with

source as (

    select * from {{ source('stream', 'stream_batches') }}

),

renamed as (

    select
        -- ids
        query_id,
        batch_id,
        load_id,

        -- numerics
        files as file_count,
        rows_read,
        rows_accepted,
        rows_quarantined,
        batch_seconds,
        rows_per_second,
        latency_p50_seconds,
        latency_max_seconds,
        users_refreshed,
        fold_in_seconds,

        -- timestamps
        started_at,
        committed_at,
        finished_at

    from source

)

select * from renamed

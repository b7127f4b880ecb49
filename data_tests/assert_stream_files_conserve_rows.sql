-- Nothing a stream file held is lost: per landed file, every line read was either accepted into
-- bronze.rating_events or quarantined. Returns the files whose counts do not add up.

with

stream_files as (

    select * from {{ source('stream', 'stream_files') }}

),

unbalanced as (

    select
        load_id,
        source_file,
        rows_read,
        rows_accepted,
        rows_quarantined

    from stream_files
    where rows_read <> rows_accepted + rows_quarantined

)

select * from unbalanced

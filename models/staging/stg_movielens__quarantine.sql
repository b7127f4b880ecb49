with

source as (

    select * from {{ source('movielens', 'quarantine') }}

),

ingest_log as (

    select * from {{ source('movielens', 'ingest_log') }}

),

stream_batches as (

    select * from {{ source('stream', 'stream_batches') }}

),

ledger as (

    -- A quarantined line is committed with its load: a batch ingest's file or a stream micro-batch.
    select load_id from ingest_log

    union all

    select load_id from stream_batches

),

committed as (

    {{ committed_only('source', 'ledger') }}

),

renamed as (

    select
        -- ids
        load_id,

        -- strings
        target_table,
        source_file,
        reason,
        raw_line,

        -- numerics
        line_number,

        -- timestamps
        quarantined_at

    from committed

)

select * from renamed

with

source as (

    select * from {{ source('movielens', 'ingest_log') }}

),

renamed as (

    select
        -- ids
        load_id,

        -- strings
        dataset,
        target_table,
        source_file,
        file_sha256,

        -- numerics
        rows_read,
        rows_loaded,
        rows_quarantined,

        -- timestamps
        started_at,
        finished_at

    from source

)

select * from renamed

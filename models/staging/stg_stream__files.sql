with

source as (

    select * from {{ source('stream', 'stream_files') }}

),

renamed as (

    select
        -- ids
        load_id,
        batch_id,

        -- strings
        source_file,
        file_format,

        -- numerics
        bytes as file_bytes,
        rows_read,
        rows_accepted,
        rows_quarantined,

        -- timestamps
        landed_at

    from source

)

select * from renamed

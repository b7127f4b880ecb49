with

source as (

    select * from {{ source('movielens', 'quarantine') }}

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

    from source

)

select * from renamed

with

source as (

    select * from {{ source('movielens', 'users') }}

),

renamed as (

    -- zip_code stays in bronze: it is personal data no model needs.
    select
        -- ids
        cast(user_id as int) as user_id,

        -- strings
        trim(gender) as gender,
        trim(occupation) as occupation,

        -- numerics
        cast(age as int) as age,

        -- lineage
        ingested_at,
        load_id,
        source_file,
        line_number

    from source

),

ranked as (

    -- A user may be in several loads: the latest load wins, then the last line.
    select
        *,
        row_number() over (
            partition by user_id
            order by
                ingested_at desc,
                load_id desc,
                line_number desc
        ) as recency_rank

    from renamed

),

deduplicated as (

    select
        user_id,
        gender,
        occupation,
        age,
        ingested_at,
        load_id,
        source_file,
        line_number

    from ranked
    where recency_rank = 1

)

select * from deduplicated

with

source as (

    select * from {{ source('movielens', 'users') }}

),

ingest_log as (

    select * from {{ source('movielens', 'ingest_log') }}

),

committed as (

    {{ committed_only('source', 'ingest_log') }}

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

    from committed

),

ranked as (

    -- A user may be in several loads: the latest load wins, then the last line.
    select
        *,
        {{ latest_wins_rank(['user_id']) }} as recency_rank

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

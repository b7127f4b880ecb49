with

source as (

    select * from {{ source('movielens', 'ratings') }}

),

ingest_log as (

    select * from {{ source('movielens', 'ingest_log') }}

),

committed as (

    {{ committed_only('source', 'ingest_log') }}

),

renamed as (

    select
        -- ids
        cast(user_id as int) as user_id,
        cast(movie_id as int) as movie_id,

        -- numerics
        cast(rating as double) as rating,

        -- timestamps
        {{ epoch_seconds_to_timestamp('epoch_seconds') }} as rated_at,

        -- lineage
        ingested_at,
        load_id,
        source_file,
        line_number

    from committed

),

ranked as (

    -- A user may rate a movie again, and a load may repeat another: the latest rating wins,
    -- then the latest load, then the last line.
    select
        *,
        {{ latest_wins_rank(['user_id', 'movie_id'], leading=['rated_at']) }} as recency_rank

    from renamed

),

deduplicated as (

    select
        user_id,
        movie_id,
        rating,
        rated_at,
        ingested_at,
        load_id,
        source_file,
        line_number

    from ranked
    where recency_rank = 1

)

select * from deduplicated

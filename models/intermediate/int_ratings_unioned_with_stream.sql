with

batch_ratings as (

    select * from {{ ref('stg_movielens__ratings') }}

),

stream_ratings as (

    select * from {{ ref('stg_stream__rating_events') }}

),

unioned as (

    select
        user_id,
        movie_id,
        rating,
        rated_at,
        'batch' as rating_source,
        ingested_at,
        load_id,
        source_file,
        line_number

    from batch_ratings

    union all

    select
        user_id,
        movie_id,
        rating,
        rated_at,
        'stream' as rating_source,
        ingested_at,
        load_id,
        source_file,
        line_number

    from stream_ratings

),

ranked as (

    -- The same rule as for the batch loads alone: the latest rating wins, then the latest
    -- ingestion, so a streamed re-rating replaces a batch-loaded one, while a replayed rating
    -- older than the one in bronze.ratings does not.
    select
        *,
        {{ latest_wins_rank(['user_id', 'movie_id'], leading=['rated_at'], line_order=['source_file', 'line_number']) }}
            as recency_rank

    from unioned

),

deduplicated as (

    select
        user_id,
        movie_id,
        rating,
        rated_at,
        rating_source,
        ingested_at,
        load_id,
        source_file,
        line_number

    from ranked
    where recency_rank = 1

)

select * from deduplicated

with

rating_events as (

    select * from {{ ref('stg_stream__rating_events') }}

),

movies as (

    select * from {{ ref('movies') }}

),

ranked as (

    -- Newest first: the ratings of one micro-batch share ingested_at, so then the newest rating,
    -- then the file order.
    select
        row_number() over (
            order by
                ingested_at desc,
                rated_at desc,
                source_file desc,
                line_number desc
        ) as recency_rank,
        user_id,
        movie_id,
        rating,
        rated_at,
        landed_at,
        ingested_at,
        batch_id,
        source_file,
        line_number

    from rating_events

),

latest as (

    select * from ranked
    where recency_rank <= {{ var('stream_latest_n') }}

),

joined as (

    -- A left join: a rating of a movie missing from gold.movies keeps its row (and fails the
    -- title's not_null test) instead of vanishing.
    select
        latest.recency_rank,
        latest.user_id,
        latest.movie_id,
        movies.title,
        movies.release_year,
        latest.rating,
        latest.rated_at,
        latest.landed_at,
        latest.ingested_at,
        {{ seconds_between('latest.landed_at', 'latest.ingested_at') }} as landing_to_ingest_seconds,
        latest.batch_id,
        latest.source_file,
        latest.line_number

    from latest
    left join movies
        on latest.movie_id = movies.movie_id

)

select * from joined

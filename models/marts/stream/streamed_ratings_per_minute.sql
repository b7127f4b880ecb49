{#- Bucketed here because Superset's time grains are broken on Spark (see README). Minutes are
    those in which the stream wrote the ratings (ingested_at), not when they were made: a
    replayed rating keeps its historical rated_at. -#}

with

rating_events as (

    select * from {{ ref('stg_stream__rating_events') }}

),

bucketed as (

    select
        {{ dbt.date_trunc('minute', 'ingested_at') }} as minute_start,
        user_id,
        movie_id,
        rating

    from rating_events

),

per_minute as (

    select
        minute_start,
        count(*) as rating_count,
        avg(rating) as rating_mean,
        count(distinct user_id) as user_count,
        count(distinct movie_id) as movie_count

    from bucketed
    group by minute_start

),

bounds as (

    select
        min(minute_start) as first_minute,
        max(minute_start) as last_minute

    from per_minute

),

minutes as (

    -- Every minute from the first streamed rating to the last, so a quiet minute is a 0 on the
    -- chart rather than a line drawn across the gap. No rows while nothing has streamed.
    select {{ unnest(minute_sequence('first_minute', 'last_minute')) }} as minute_start
    from bounds
    where first_minute is not null

),

filled as (

    select
        minutes.minute_start,
        coalesce(per_minute.rating_count, 0) as rating_count,
        per_minute.rating_mean,
        coalesce(per_minute.user_count, 0) as user_count,
        coalesce(per_minute.movie_count, 0) as movie_count

    from minutes
    left join per_minute
        on minutes.minute_start = per_minute.minute_start

)

select * from filled

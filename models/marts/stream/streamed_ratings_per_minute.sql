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

minutes as (

    {{ minute_spine('per_minute') }}

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

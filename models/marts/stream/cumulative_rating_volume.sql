{#- Ratings received over time, batch loads and stream together, by the minute they were
    committed to bronze. The batch side comes from the ingest's ledger (one row per loaded file)
    rather than from the ratings themselves, so this view stays cheap to query at every
    dashboard refresh whatever the dataset's size. -#}

with

loads as (

    select * from {{ ref('stg_movielens__ingest_log') }}

),

stream_minutes as (

    select * from {{ ref('streamed_ratings_per_minute') }}

),

batch_minutes as (

    select
        {{ dbt.date_trunc('minute', 'finished_at') }} as minute_start,
        sum(rows_loaded) as batch_rating_count

    from loads
    where target_table = 'bronze.ratings'
    group by {{ dbt.date_trunc('minute', 'finished_at') }}

),

minutes as (

    select minute_start from batch_minutes
    union distinct
    select minute_start from stream_minutes

),

joined as (

    select
        minutes.minute_start,
        coalesce(batch_minutes.batch_rating_count, 0) as batch_rating_count,
        coalesce(stream_minutes.rating_count, 0) as stream_rating_count

    from minutes
    left join batch_minutes
        on minutes.minute_start = batch_minutes.minute_start
    left join stream_minutes
        on minutes.minute_start = stream_minutes.minute_start

),

with_cumulative as (

    select
        minute_start,
        batch_rating_count,
        stream_rating_count,
        batch_rating_count + stream_rating_count as rating_count,
        sum(batch_rating_count) over (
            order by minute_start
            rows between unbounded preceding and current row
        ) as cumulative_batch_rating_count,
        sum(stream_rating_count) over (
            order by minute_start
            rows between unbounded preceding and current row
        ) as cumulative_stream_rating_count,
        sum(batch_rating_count + stream_rating_count) over (
            order by minute_start
            rows between unbounded preceding and current row
        ) as cumulative_rating_count

    from joined

)

select * from with_cumulative

-- The stream's values lie in their ranges: ratings on the MovieLens scale (within
-- [rating_scale_min, rating_scale_max], whole rating_scale_step steps), 1-based line numbers,
-- no negative count, size, duration, rate or latency. One query for every rule (each test is a
-- Spark query). Returns one row per offending row, with the table and the rule it breaks.

with

rating_events as (

    select * from {{ source('stream', 'rating_events') }}

),

batches as (

    select * from {{ source('stream', 'stream_batches') }}

),

stream_files as (

    select * from {{ source('stream', 'stream_files') }}

),

bad_events as (

    select
        'rating_events' as source_table,
        load_id,
        case
            when rating < {{ var('rating_scale_min') }}
                or rating > {{ var('rating_scale_max') }}
                or rating / {{ var('rating_scale_step') }} <> round(rating / {{ var('rating_scale_step') }})
                then 'rating off the scale'
            when line_number < 1 then 'line_number < 1'
            when batch_id < 0 then 'batch_id < 0'
        end as problem

    from rating_events

),

bad_batches as (

    select
        'stream_batches' as source_table,
        load_id,
        case
            when batch_id < 0 then 'batch_id < 0'
            when files < 0 or rows_read < 0 or rows_accepted < 0 or rows_quarantined < 0
                or users_refreshed < 0
                then 'negative count'
            when batch_seconds < 0 or rows_per_second < 0 or fold_in_seconds < 0
                then 'negative duration or rate'
            when latency_p50_seconds < 0 or latency_max_seconds < latency_p50_seconds
                then 'not 0 <= latency_p50_seconds <= latency_max_seconds'
        end as problem

    from batches

),

bad_files as (

    select
        'stream_files' as source_table,
        load_id,
        case
            when bytes < 0 or rows_read < 0 or rows_accepted < 0 or rows_quarantined < 0
                then 'negative size or count'
        end as problem

    from stream_files

),

unioned as (

    select * from bad_events
    union all
    select * from bad_batches
    union all
    select * from bad_files

)

select * from unioned
where problem is not null

-- Exactly once: a line of a landed file is in bronze.rating_events at most once per micro-batch
-- (a batch run again must rewrite its partition, not append to it). Returns the repeated lines.

with

rating_events as (

    select * from {{ source('stream', 'rating_events') }}

),

line_counts as (

    select
        load_id,
        source_file,
        line_number,
        count(*) as occurrences

    from rating_events
    group by
        load_id,
        source_file,
        line_number

),

repeated as (

    select * from line_counts
    where occurrences > 1

)

select * from repeated

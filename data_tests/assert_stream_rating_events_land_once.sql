-- Exactly once: a line of a landed file is in bronze.rating_events at most once, whichever
-- micro-batches read it. Within a stream (one checkpoint: the stream id in load_id,
-- `stream-<stream id>-<batch id>`) every landed file has a name of its own (the landing gate
-- renames a reused name), so (stream, source_file, line_number) identifies a line. The key must
-- not include the batch: a line written by two batches (a batch run again that appended instead
-- of being skipped, or a file read twice) has two load_ids and would pass a per-batch count.
-- Returns the repeated lines, with how many loads wrote each and the first and last of them.

with

rating_events as (

    select
        *,
        regexp_extract(load_id, '^stream-([^-]+)-', 1) as stream_id

    from {{ source('stream', 'rating_events') }}

),

line_counts as (

    select
        stream_id,
        source_file,
        line_number,
        count(*) as occurrences,
        count(distinct load_id) as load_count,
        min(load_id) as first_load_id,
        max(load_id) as last_load_id

    from rating_events
    group by
        stream_id,
        source_file,
        line_number

),

repeated as (

    select * from line_counts
    where occurrences > 1

)

select * from repeated

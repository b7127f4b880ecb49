{#- The stream's quarantine rate per minute: lines rejected / lines read by the micro-batches that
    committed in the minute, from the stream's ledger (stg_stream__batches: committed batches
    only, read = accepted + quarantined per batch). Bucketed here because Superset's time grains
    are broken on Spark (see README). Quiet minutes between the first batch and the last get a
    row with 0 lines and a null rate, so a chart shows the gap. -#}

with

batches as (

    select * from {{ ref('stg_stream__batches') }}

),

bucketed as (

    select
        {{ dbt.date_trunc('minute', 'committed_at') }} as minute_start,
        rows_read,
        rows_accepted,
        rows_quarantined

    from batches

),

per_minute as (

    select
        minute_start,
        count(*) as batch_count,
        sum(rows_read) as rows_read,
        sum(rows_accepted) as rows_accepted,
        sum(rows_quarantined) as rows_quarantined

    from bucketed
    group by minute_start

),

minutes as (

    {{ minute_spine('per_minute') }}

),

filled as (

    select
        minutes.minute_start,
        coalesce(per_minute.batch_count, 0) as batch_count,
        coalesce(per_minute.rows_read, 0) as rows_read,
        coalesce(per_minute.rows_accepted, 0) as rows_accepted,
        coalesce(per_minute.rows_quarantined, 0) as rows_quarantined,
        cast(per_minute.rows_quarantined as double)
            / nullif(per_minute.rows_read, 0) as quarantine_rate

    from minutes
    left join per_minute
        on minutes.minute_start = per_minute.minute_start

)

select * from filled

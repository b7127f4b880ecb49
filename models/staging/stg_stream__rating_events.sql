with

source as (

    select * from {{ source('stream', 'rating_events') }}

),

batches as (

    select * from {{ source('stream', 'stream_batches') }}

),

committed as (

    -- The ledger is the stream's commit: rows of a micro-batch without a ledger row are from a
    -- batch that is still running or died, and are written once when it runs again.
    {{ committed_only('source', 'batches') }}

),

renamed as (

    -- epoch_seconds is left in bronze: rated_at is the same instant, typed.
    select
        -- ids
        cast(user_id as int) as user_id,
        cast(movie_id as int) as movie_id,
        batch_id,

        -- numerics
        cast(rating as double) as rating,

        -- timestamps
        rated_at,
        landed_at,
        ingested_at,

        -- lineage
        load_id,
        source_file,
        line_number

    from committed

)

select * from renamed

{#- Incremental: a build merges (Delta MERGE on user_id, movie_id) the winning ratings of the loads
    it has not merged yet, a batch ingest's file or a stream micro-batch, so a stream batch costs a
    merge, not a rebuild. New loads are found by load_id, not by a time watermark: a load commits
    when its ledger row lands, which can be long after its rows' ingested_at (an ingest running
    beside the stream), and a watermark would skip it. The latest-wins rank is taken over every
    rating first, so a rating that loses to an existing one (an older re-rating) is never merged.
    `lakehouse ingest --replace` drops this table with bronze, so the next build starts it afresh. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='merge',
        unique_key=['user_id', 'movie_id'],
    )
}}

with

ratings as (

    select * from {{ ref('int_ratings_unioned_with_stream') }}

),

{% if is_incremental() %}

merged_loads as (

    select distinct load_id from {{ this }}

),

{% endif %}

new_ratings as (

    select ratings.*
    from ratings
    {% if is_incremental() %}
    left join merged_loads
        on ratings.load_id = merged_loads.load_id
    where merged_loads.load_id is null
    {% endif %}

),

final as (

    select
        user_id,
        movie_id,
        rating,
        rated_at,
        cast(rated_at as date) as rated_on,
        rating_source,
        ingested_at,
        load_id

    from new_ratings

)

select * from final

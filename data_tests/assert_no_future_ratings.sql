-- No rating is dated in the future. The ingest accepts timestamps up to a day ahead (clocks
-- differ), so the same day of slack applies here. Returns the ratings from the future.

with

ratings as (

    select * from {{ ref('ratings') }}

),

future_ratings as (

    select
        user_id,
        movie_id,
        rated_at

    from ratings
    where rated_at > {{ dbt.dateadd('day', 1, dbt.current_timestamp()) }}

)

select * from future_ratings

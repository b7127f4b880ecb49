with

ratings as (

    select * from {{ ref('int_ratings_unioned_with_stream') }}

),

user_stats as (

    select
        user_id,
        count(*) as rating_count,
        avg(rating) as rating_mean,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at

    from ratings
    group by user_id

)

select * from user_stats

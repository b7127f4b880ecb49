with

ratings as (

    select * from {{ ref('int_ratings_unioned_with_stream') }}

),

movie_stats as (

    select
        movie_id,
        count(*) as rating_count,
        sum(rating) as rating_sum,
        avg(rating) as rating_mean,
        stddev_samp(rating) as rating_stddev,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at

    from ratings
    group by movie_id

)

select * from movie_stats

with

movies as (

    select * from {{ ref('movies') }}

),

ranked as (

    -- Ties on the count go to the lower movie_id, so the ranks are 1..n without gaps.
    select
        row_number() over (
            order by
                rating_count desc,
                movie_id
        ) as rank,
        movie_id,
        title,
        release_year,
        rating_count,
        rating_mean,
        bayesian_rating

    from movies
    where rating_count > 0

),

top_movies as (

    select * from ranked
    where rank <= {{ var('top_n') }}

)

select * from top_movies

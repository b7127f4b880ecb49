with

movies as (

    select * from {{ ref('movies') }}

),

eligible as (

    -- Only movies with at least m ratings, the same m as the weighted rating's prior weight.
    select * from movies
    where rating_count >= {{ var('bayesian_min_votes') }}

),

ranked as (

    select
        row_number() over (
            order by
                bayesian_rating desc,
                rating_count desc,
                movie_id
        ) as rank,
        movie_id,
        title,
        release_year,
        rating_count,
        rating_mean,
        bayesian_rating

    from eligible

),

top_movies as (

    select * from ranked
    where rank <= {{ var('top_n') }}

)

select * from top_movies

{%- set min_votes = var('bayesian_min_votes') -%}

with

movies as (

    select * from {{ ref('stg_movielens__movies') }}

),

movie_genres as (

    select * from {{ ref('int_genres_aggregated_to_movies') }}

),

movie_ratings as (

    select * from {{ ref('int_ratings_aggregated_to_movies') }}

),

global_stats as (

    -- C of the weighted rating: the mean of every rating (not the mean of the movie means).
    select
        cast(sum(rating_sum) as double) / nullif(sum(rating_count), 0) as global_rating_mean

    from movie_ratings

),

joined as (

    select
        movies.movie_id,
        movies.title,
        movies.release_year,
        coalesce(movie_genres.genres, {{ empty_string_array() }}) as genres,
        coalesce(movie_ratings.rating_count, 0) as rating_count,
        coalesce(movie_ratings.rating_sum, 0) as rating_sum,
        movie_ratings.rating_mean,
        global_stats.global_rating_mean

    from movies
    left join movie_genres
        on movies.movie_id = movie_genres.movie_id
    left join movie_ratings
        on movies.movie_id = movie_ratings.movie_id
    cross join global_stats

),

scored as (

    -- IMDb's weighted rating (v / (v + m)) * R + (m / (v + m)) * C, with v the movie's rating
    -- count, R its mean, m = var('bayesian_min_votes') and C the global mean. Written as
    -- (v * R + m * C) / (v + m), where v * R is the movie's rating sum, so that a movie without
    -- ratings (v = 0, R null) gets the prior C instead of null.
    select
        movie_id,
        title,
        release_year,
        genres,
        rating_count,
        rating_mean,
        (rating_sum + {{ min_votes }} * global_rating_mean)
            / nullif(rating_count + {{ min_votes }}, 0) as bayesian_rating

    from joined

)

select * from scored

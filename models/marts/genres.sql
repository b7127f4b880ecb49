with

movie_genres as (

    select * from {{ ref('int_movies_unnested_to_genres') }}

),

movies as (

    select * from {{ ref('movies') }}

),

ratings as (

    select * from {{ ref('ratings') }}

),

movie_totals as (

    select count(*) as total_movies
    from movies

),

rating_totals as (

    select count(*) as total_ratings
    from ratings

),

genre_movies as (

    select
        genre,
        count(*) as movie_count

    from movie_genres
    group by genre

),

genre_ratings as (

    -- A rating counts once for every genre of its movie.
    select
        movie_genres.genre,
        count(*) as rating_count,
        avg(ratings.rating) as rating_mean,
        stddev_samp(ratings.rating) as rating_stddev

    from movie_genres
    inner join ratings
        on movie_genres.movie_id = ratings.movie_id
    group by movie_genres.genre

),

joined as (

    select
        genre_movies.genre,
        genre_movies.movie_count,
        cast(genre_movies.movie_count as double)
            / nullif(movie_totals.total_movies, 0) as movie_share,
        coalesce(genre_ratings.rating_count, 0) as rating_count,
        cast(coalesce(genre_ratings.rating_count, 0) as double)
            / nullif(rating_totals.total_ratings, 0) as rating_share,
        genre_ratings.rating_mean,
        genre_ratings.rating_stddev

    from genre_movies
    left join genre_ratings
        on genre_movies.genre = genre_ratings.genre
    cross join movie_totals
    cross join rating_totals

)

select * from joined

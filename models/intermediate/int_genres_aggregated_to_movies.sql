with

movie_genres as (

    select * from {{ ref('int_movies_unnested_to_genres') }}

),

genres_per_movie as (

    select
        movie_id,
        {{ array_agg_distinct_sorted('genre') }} as genres,
        count(*) as genre_count

    from movie_genres
    group by movie_id

)

select * from genres_per_movie

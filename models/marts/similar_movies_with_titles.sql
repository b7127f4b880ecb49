with

similar_movies as (

    select * from {{ ref('stg_ml__similar_movies') }}

),

movies as (

    select * from {{ ref('movies') }}

),

final as (

    select
        similar_movies.movie_id,
        movies.title,
        similar_movies.similarity_rank,
        similar_movies.similar_movie_id,
        similar.title as similar_title,
        similar_movies.similarity,
        similar_movies.model_version

    from similar_movies
    inner join movies
        on similar_movies.movie_id = movies.movie_id
    inner join movies as similar
        on similar_movies.similar_movie_id = similar.movie_id

)

select * from final

with

recommendations as (

    select * from {{ ref('stg_ml__recommendations') }}

),

movies as (

    select * from {{ ref('movies') }}

),

final as (

    select
        recommendations.user_id,
        recommendations.recommendation_rank,
        recommendations.movie_id,
        movies.title,
        movies.release_year,
        movies.genres,
        movies.rating_count,
        movies.bayesian_rating,
        recommendations.score,
        recommendations.model_version,
        recommendations.updated_at

    from recommendations
    inner join movies
        on recommendations.movie_id = movies.movie_id

)

select * from final

with

source as (

    select * from {{ source('ml', 'similar_movies') }}

),

renamed as (

    select
        movie_id,
        similar_movie_id,
        rank as similarity_rank,
        similarity,
        model_name,
        model_version

    from source

)

select * from renamed
